"""Wiring: the dashboard's config turned into an aiohttp application (its token for the
services, its login gate, the templates, the routes and middlewares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import jwt
from aiohttp import web

from services.web import routes
from services.web.clients import Services
from services.web.config import AuthMode, WebConfig
from services.web.login import Gate, load_or_create_key

HERE = Path(__file__).parent
SESSION_KEY_FILE = "web-session.key"


class SetupError(Exception):
    """The configuration cannot be served; the message names the key and what to do."""


def _read_secret(config: WebConfig, inline: str | None, file_key: str, what: str) -> str | None:
    if inline:
        return inline.strip()
    if not getattr(config.web, file_key):
        return None
    path = config.resolve(file_key)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SetupError(
            f"web.{file_key} / SECTORSTORAGE_WEB_{file_key.upper()}: cannot read {path} ({exc.strerror or exc})"
        ) from None
    if not text:
        raise SetupError(f"web.{file_key}: {path} is empty: put the {what} in it")
    return text


def service_token(config: WebConfig) -> str:
    """The dashboard's token for the manager and the index: required, and read-only, so a leaked
    dashboard can look but never change the fleet."""
    token = _read_secret(config, config.web.token, "token_file", "dashboard's read token")
    if token is None:
        raise SetupError(
            "no token for the services: set web.token_file (SECTORSTORAGE_WEB_TOKEN_FILE) to a file holding a read "
            "token (sectorctl auth create-token --perm read)"
        )
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise SetupError("web.token is not a token made by `sectorctl auth create-token`") from None
    perms = set(claims.get("perms") or [])
    if perms - {"read"}:
        raise SetupError(
            f"web.token grants {', '.join(sorted(perms))}: the dashboard only reads, give it a read token "
            "(sectorctl auth create-token --perm read)"
        )
    return token


def gate(config: WebConfig) -> Gate | None:
    if config.web.auth is AuthMode.PROXY:
        return None
    password = _read_secret(config, config.web.password, "password_file", "dashboard password")
    if password is None:
        raise SetupError(
            "no dashboard password: set web.password_file (SECTORSTORAGE_WEB_PASSWORD_FILE) to a file holding the "
            "password people log in with, or web.auth = 'proxy' behind an authenticating proxy (docs/dashboard.md)"
        )
    if len(password) < 8:
        raise SetupError("the dashboard password must be at least 8 characters")
    try:
        key = load_or_create_key(config.data_dir / SESSION_KEY_FILE)
    except (OSError, ValueError) as exc:
        raise SetupError(f"session key {config.data_dir / SESSION_KEY_FILE}: {exc}") from None
    return Gate(password, key, config.web.session_ttl_s)


def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build(config: WebConfig) -> web.Application:
    """The application; raises SetupError for a configuration it cannot serve."""
    if not config.web.manager or not config.web.index:
        raise SetupError(
            "the dashboard needs both services: --manager HOST:PORT (web.manager / SECTORSTORAGE_WEB_MANAGER) and "
            "--index HOST:PORT (web.index / SECTORSTORAGE_WEB_INDEX)"
        )
    token = service_token(config)
    login = gate(config)
    app = web.Application()
    state: dict[str, routes.Pages] = {}

    async def open_services(app: web.Application) -> None:
        services = Services(config.web.manager, config.web.index, token, config.web.call_timeout_s)
        state["pages"].services = services

    async def close_services(app: web.Application) -> None:
        await state["pages"].services.close()

    pages = routes.Pages(
        services=None,  # type: ignore[arg-type]  # opened on the event loop (open_services)
        templates=templates(),
        refresh_s=config.web.refresh_s,
        gate=login,
        secure_cookie=bool(config.tls.cert_file),
    )
    state["pages"] = pages
    app.middlewares.extend([routes.security_headers, routes.error_middleware(pages), routes.auth_middleware(login)])
    app.add_routes(routes.routes(pages))
    app.router.add_static("/static/", HERE / "static", show_index=False)
    app.on_startup.append(open_services)
    app.on_cleanup.append(close_services)
    return app
