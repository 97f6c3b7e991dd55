"""The dashboard's HTTP layer (aiohttp): one handler per page that checks the query, asks the
services (clients.py), builds the page's data (views/) and renders its template. Middlewares
turn every failure into a readable page (400 for bad input, 404 for what does not exist, 503
naming the service that is down, 500 without a traceback) and keep out requests without a login
when the dashboard has its own (login.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
from aiohttp import web

from services.web.clients import NotFound, ServiceError, Services
from services.web.login import COOKIE, Gate
from services.web.model import HistoryFilter, SectorStatus
from services.web.views import fleet, history, queue, sectors, storage
from services.web.views.params import BadRequest, history_filter, sector_key

log = logging.getLogger("sectorstorage.web")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Paths open without a login: the probe, the login form and the files it needs.
OPEN_PATHS = ("/healthz", "/login", "/static/")
# States in which a sector has sealed files to check.
SEALED_STATES = ("commit-1-done", "commit-2-done", "finalized")
NAV = (("fleet", "Fleet"), ("queue", "Queue"), ("storage", "Storage"), ("sectors", "Sectors"), ("history", "History"))


@dataclass
class Fetch:
    """The service errors met while one page was built (shown at the top of the page)."""

    errors: list[ServiceError] = field(default_factory=list)

    async def get(self, call: Awaitable[T]) -> T | None:
        try:
            return await call
        except ServiceError as exc:
            log.warning("service call failed", extra={"service": exc.service, "code": exc.code, "detail": exc.detail})
            self.errors.append(exc)
            return None


class ErrorPage(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def no_params(request: web.Request) -> None:
    if request.query:
        names = ", ".join(repr(k[:40]) for k in request.query)
        raise BadRequest(f"this page takes no query parameters (got {names})")


@dataclass
class Pages:
    services: Services
    templates: jinja2.Environment
    refresh_s: float
    gate: Gate | None
    secure_cookie: bool

    def render(self, request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
        errors: list[ServiceError] = []
        for e in context.pop("fetch").errors if "fetch" in context else []:
            # One banner per service (a page may have asked it several things).
            if all(e.service != seen.service for seen in errors):
                errors.append(e)
        text = self.templates.get_template(name).render(
            nav=NAV,
            active=context.pop("active", ""),
            refresh_s=self.refresh_s,
            logged_in=self.gate is not None,
            errors=[
                {
                    "service": e.service,
                    "target": e.target,
                    "code": e.code,
                    "detail": e.detail,
                    "down": e.down,
                }
                for e in errors
            ],
            generated=time.strftime("%H:%M:%SZ", time.gmtime()),
            **context,
        )
        if errors and status == 200:
            status = 503 if context.get("unavailable") else 200
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    # --- pages ---------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        no_params(request)
        raise web.HTTPFound("/fleet")

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def fleet(self, request: web.Request) -> web.StreamResponse:
        no_params(request)
        f = Fetch()
        workers, jobs = await asyncio.gather(f.get(self.services.workers()), f.get(self.services.jobs()))
        page = fleet.build(workers, jobs or [], time.time()) if workers is not None else None
        return self.render(request, "fleet.html", active="fleet", page=page, fetch=f, unavailable=page is None)

    async def queue(self, request: web.Request) -> web.StreamResponse:
        no_params(request)
        f = Fetch()
        diag = await f.get(self.services.sched_diag())
        page = queue.build(diag, time.time()) if diag is not None else None
        return self.render(request, "queue.html", active="queue", page=page, fetch=f, unavailable=page is None)

    async def storage(self, request: web.Request) -> web.StreamResponse:
        no_params(request)
        f = Fetch()
        paths, workers = await asyncio.gather(f.get(self.services.paths()), f.get(self.services.workers()))
        serving: dict[str, list[str]] | None = None
        if workers is not None:
            serving = {}
            for w in workers:
                for storage_id, local in w.paths:
                    serving.setdefault(storage_id, []).append(f"{w.name or w.hostname}:{local}")
        page = storage.build(paths, serving, time.time()) if paths is not None else None
        return self.render(request, "storage.html", active="storage", page=page, fetch=f, unavailable=page is None)

    async def sectors(self, request: web.Request) -> web.StreamResponse:
        no_params(request)
        f = Fetch()
        listed = await f.get(self.services.sectors())
        page = sectors.build_list(listed[0], listed[1], time.time()) if listed is not None else None
        return self.render(request, "sectors.html", active="sectors", page=page, fetch=f, unavailable=page is None)

    async def sector(self, request: web.Request) -> web.StreamResponse:
        no_params(request)
        key = sector_key(request.match_info["miner"], request.match_info["number"])
        f = Fetch()
        try:
            status = await f.get(self.services.sector(key))
        except NotFound:
            raise ErrorPage(404, "No such sector", f"The manager knows no sector {key}.") from None
        if status is None:
            return self.render(
                request, "sector.html", active="sectors", page=None, fetch=f, unavailable=True, key=str(key)
            )
        runs_call = self.services.history(HistoryFilter(sector=key), limit=500)
        runs, locations, provable = await asyncio.gather(
            f.get(runs_call), f.get(self.services.locations(key)), self._provable(f, status)
        )
        page = sectors.build_sector(status, runs[0] if runs else None, locations, provable, time.time())
        return self.render(request, "sector.html", active="sectors", page=page, fetch=f, key=str(key))

    async def _provable(self, f: Fetch, status: SectorStatus) -> tuple[bool | None, str]:
        if status.state not in SEALED_STATES:
            return None, f"not checked: the sector is {status.state}, not sealed yet"
        try:
            why = await self.services.provable(status)
        except NotFound as exc:
            return False, f"not provable: {exc}"
        except ServiceError as exc:
            f.errors.append(exc)
            return None, "not checked: the manager did not answer"
        return (True, "provable") if why is None else (False, f"not provable: {why}")

    async def history(self, request: web.Request) -> web.StreamResponse:
        filters = history_filter(request.query)
        f = Fetch()
        now = time.time()
        runs, chart_runs = await asyncio.gather(
            f.get(self.services.history(filters, limit=500)),
            f.get(self.services.history(HistoryFilter(since=now - history.HOURS * 3600))),
        )
        page = (
            history.build(
                runs[0],
                runs[1],
                chart_runs[0] if chart_runs else None,
                now,
                chart_truncated=bool(chart_runs and chart_runs[1]),
            )
            if runs is not None
            else None
        )
        return self.render(
            request,
            "history.html",
            active="history",
            page=page,
            fetch=f,
            unavailable=page is None,
            filters=_filter_form(request.query),
        )

    # --- login ---------------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return self.render(request, "login.html", next=_safe_next(request.query.get("next", "/")), failed=False)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = _safe_next(str(form.get("next", "/")))
        if self.gate is None:
            raise web.HTTPSeeOther(target)
        _refuse_if_guessing(self.gate, request)
        if not self.gate.password_ok(str(form.get("password", ""))):
            # Slows down guessing; the dashboard is read-only, so there is nothing else to lock.
            self.gate.failures.failed(request.remote or "")
            await asyncio.sleep(0.5)
            return self.render(request, "login.html", status=401, next=target, failed=True)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            self.gate.issue(),
            max_age=int(self.gate.ttl_s),
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookie,
            path="/",
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def _safe_next(target: str) -> str:
    """Only a path of this site (no 'https://elsewhere' or '//elsewhere' after login)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _filter_form(query: Mapping[str, str]) -> dict[str, str]:
    return {k: query.get(k, "") for k in ("sector", "task", "worker", "since", "failed")}


def _refuse_if_guessing(gate: Gate, request: web.Request) -> None:
    """429 for an address with too many wrong passwords of late (login.FailedLogins)."""
    wait = gate.failures.blocked(request.remote or "")
    if wait > 0:
        raise ErrorPage(
            429,
            "Too many wrong passwords",
            f"too many wrong passwords from your address: try again in {int(wait) + 1} s",
        )


def auth_middleware(gate: Gate | None) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if gate is None or request.path.startswith(OPEN_PATHS):
            return await handler(request)
        cookie = request.cookies.get(COOKIE, "")
        header = request.headers.get("Authorization", "")
        if cookie and gate.cookie_ok(cookie):
            return await handler(request)
        if header:
            _refuse_if_guessing(gate, request)
            if gate.basic_ok(header):
                return await handler(request)
            gate.failures.failed(request.remote or "")
        if request.method == "GET" and "text/html" in request.headers.get("Accept", "text/html"):
            raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe=""))
        raise web.HTTPUnauthorized(
            text="log in first (the dashboard password), or send it with HTTP basic auth\n",
            headers={"WWW-Authenticate": 'Basic realm="sectorstorage dashboard"'},
        )

    return check


def error_middleware(pages: Pages) -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except BadRequest as exc:
            return _error(pages, request, 400, "Bad request", str(exc))
        except ErrorPage as exc:
            return _error(pages, request, exc.status, exc.title, exc.message)
        except NotFound as exc:
            return _error(pages, request, 404, "Not found", str(exc))
        except web.HTTPException as exc:
            if exc.status == 404:
                return _error(pages, request, 404, "Not found", f"There is no page {request.path!r} here.")
            if exc.status == 405:
                return _error(
                    pages, request, 405, "Method not allowed", f"{request.method} is not used on {request.path!r}."
                )
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("page failed", extra={"path": request.path})
            return _error(
                pages, request, 500, "Internal error", "The page could not be built; the dashboard's log says why."
            )
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return errors


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _error(pages: Pages, request: web.Request, status: int, title: str, message: str) -> web.Response:
    return pages.render(request, "error.html", status=status, title=title, message=message, code=status)


def routes(pages: Pages) -> list[web.RouteDef]:
    return [
        web.get("/", pages.index),
        web.get("/healthz", pages.healthz),
        web.get("/fleet", pages.fleet),
        web.get("/queue", pages.queue),
        web.get("/storage", pages.storage),
        web.get("/sectors", pages.sectors),
        web.get("/sectors/{miner}/{number}", pages.sector),
        web.get("/history", pages.history),
        web.get("/login", pages.login_form),
        web.post("/login", pages.login),
        web.post("/logout", pages.logout),
    ]
