"""The dashboard (`sectorstorage-web`) as a real process for the tests: started with a read token
and a password of its own, and a small HTTP client that does not follow redirects (so a test
sees the login redirect as a person's browser gets it)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.auth import Permission
from services.devfleet import ServiceProcess
from tests.support.auth import token

PASSWORD = "dashboard-test-password"
StartService = Callable[..., ServiceProcess]


@dataclass(frozen=True)
class Page:
    status: int
    body: str
    headers: dict[str, str]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class Dashboard:
    proc: ServiceProcess
    password: str
    read_token: str

    @property
    def url(self) -> str:
        return f"http://{self.proc.address}"

    def get(self, path: str, *, auth: bool = True, password: str | None = None, accept: str = "text/html") -> Page:
        request = urllib.request.Request(self.url + path, headers={"Accept": accept})
        if auth:
            pair = base64.b64encode(f"ops:{password if password is not None else self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {pair}")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                return Page(response.status, response.read().decode(), dict(response.headers))
        except urllib.error.HTTPError as exc:
            return Page(exc.code, exc.read().decode(), dict(exc.headers))


def write_secrets(
    folder: Path, password: str = PASSWORD, permission: Permission = Permission.READ
) -> tuple[Path, Path, str]:
    """(token file, password file, the token) for a dashboard, mode 0600 as an operator keeps them."""
    folder.mkdir(parents=True, exist_ok=True)
    read_token = token(permission, subject="dashboard")
    token_file, password_file = folder / "web.token", folder / "web.password"
    for path, text in ((token_file, read_token), (password_file, password)):
        path.write_text(text + "\n")
        path.chmod(0o600)
    return token_file, password_file, read_token


def start_dashboard(
    start: StartService,
    manager: str,
    index: str,
    folder: Path,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    keep_token: bool = False,
) -> Dashboard:
    """A dashboard on the fleet at `manager` and `index`, refreshing every second (`keep_token`:
    with the token file already in `folder`)."""
    kept = (folder / "web.token").read_text() if keep_token else None
    token_file, password_file, read_token = write_secrets(folder)
    if kept is not None:
        token_file.write_text(kept)
        read_token = kept.strip()
    proc = start(
        "web",
        "--manager",
        manager,
        "--index",
        index,
        "--token-file",
        str(token_file),
        "--password-file",
        str(password_file),
        *args,
        env={"SECTORSTORAGE_WEB_REFRESH_S": "1", **(env or {})},
        data_dir=folder / "data",
    )
    return Dashboard(proc, PASSWORD, read_token)
