"""The dashboard's configuration, with the services' conventions (services/common/config.py):
defaults < `--config` TOML < `SECTORSTORAGE_*` environment < flags. Its own keys are in the
`[web]` section (`web.manager` is `SECTORSTORAGE_WEB_MANAGER`); `listen`, `data_dir`, `log`, `tls`
and `grpc` mean what they mean for every service.

The dashboard never holds the fleet's signing key: it reaches the services with a read token
(`web.token_file`), and its own users log in with a separate password (`web.password_file`) or
are let in by the operator's proxy (`web.auth = "proxy"`)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.config import GrpcConfig, LogConfig, TlsConfig, parse_host_port

DEFAULT_LISTEN = "127.0.0.1:7180"


class AuthMode(StrEnum):
    # Every request needs the dashboard password: a login form that sets a signed cookie, or
    # HTTP basic auth for scripts.
    PASSWORD = "password"
    # No login of its own: the operator's proxy authenticates. Only on a loopback address unless
    # `web.proxy_on_any_address` says otherwise.
    PROXY = "proxy"


class WebSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The manager and index gRPC addresses (HOST:PORT); both required.
    manager: str = ""
    index: str = ""
    # The dashboard's token for the services: a READ token (`sectorctl auth create-token --perm
    # read`). `token` inline, or `token_file` (read at start-up, relative to data_dir).
    token: str | None = Field(default=None, repr=False)
    token_file: str = ""
    auth: AuthMode = AuthMode.PASSWORD
    # The password users give to see the dashboard (auth = "password"), inline or in a file.
    password: str | None = Field(default=None, repr=False)
    password_file: str = ""
    # auth = "proxy" on an address other than loopback: the operator states that only the proxy
    # can reach the dashboard's port.
    proxy_on_any_address: bool = False
    # How long a login lasts.
    session_ttl_s: float = Field(default=12 * 3600, ge=60, le=30 * 86400)
    # Deadline of each call to the manager or the index.
    call_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # How often the pages refresh their live part (0: never).
    refresh_s: float = Field(default=5.0, ge=0, le=3600)

    @field_validator("manager", "index")
    @classmethod
    def _target(cls, value: str) -> str:
        if value and ":" not in value:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 8:
            raise ValueError("must be at least 8 characters")
        return value


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: str = DEFAULT_LISTEN
    # Holds the key that signs login cookies (web-session.key), so logins survive a restart.
    data_dir: Path = Path("./data")
    log: LogConfig = LogConfig()
    # cert_file/key_file: HTTPS on the listening port (client_ca_file: browsers must present a
    # certificate); ca_file (and client_cert_file/client_key_file): TLS to the manager and index.
    tls: TlsConfig = TlsConfig()
    grpc: GrpcConfig = GrpcConfig()
    web: WebSection = WebSection()

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_host_port(value)
        return value

    @model_validator(mode="after")
    def _proxy_only_where_safe(self) -> WebConfig:
        if self.web.auth is AuthMode.PROXY and not self.web.proxy_on_any_address and not is_loopback(self.listen):
            raise ValueError(
                f"web.auth = 'proxy' turns the dashboard's own login off, so it may only listen on loopback "
                f"(listen is {self.listen}): listen on 127.0.0.1, or set web.proxy_on_any_address = true "
                "when only the proxy can reach this port"
            )
        return self

    def resolve(self, key: str) -> Path:
        """A file named by a `web.*_file` key: relative paths are under the data dir."""
        path = Path(getattr(self.web, key))
        return path if path.is_absolute() else self.data_dir / path


def is_loopback(listen: str) -> bool:
    host, _ = parse_host_port(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
