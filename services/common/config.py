"""Service configuration: defaults, then a TOML file, then `SECTORSTORAGE_*` environment variables,
then command-line flags, validated in one place.

A bad value stops start-up with a message that names the key both ways (`auth.secret_file` /
`SECTORSTORAGE_AUTH_SECRET_FILE`), so an operator can fix it without reading code.

Environment names are the dotted key upper-cased with `_` for `.`: `metrics.listen` is
`SECTORSTORAGE_METRICS_LISTEN`, `worker.manager` is `SECTORSTORAGE_WORKER_MANAGER`. Values are
parsed as TOML scalars/arrays when they look like one (`true`, `42`, `["a","b"]`), else as strings.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "SECTORSTORAGE_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def parse_host_port(value: str) -> tuple[str, int]:
    """Splits `HOST:PORT` (IPv6 as `[::1]:PORT`); port 0 means "pick a free one"."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r} in {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port} in {value!r}")
    return host, port


def _check_listen(value: str) -> str:
    parse_host_port(value)
    return value


class LogFormat(StrEnum):
    # Text when stderr is a terminal (a person reads it), JSON otherwise (a collector does).
    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: str = "info"
    format: LogFormat = LogFormat.AUTO

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        allowed = {"debug", "info", "warning", "error", "critical"}
        if value.lower() not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}")
        return value.lower()


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Prometheus /metrics HTTP endpoint on its own port; "" turns it off.
    listen: str = "127.0.0.1:0"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return value if value == "" else _check_listen(value)


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # HMAC key (HS256) that signs the bearer tokens. Every service of one fleet shares it.
    secret: str | None = Field(default=None, repr=False)
    # File holding the key; created with a random key on first start when missing and
    # `secret` is unset. Relative paths are under the data dir.
    secret_file: str = "auth.key"
    # Off only for debugging on a trusted host; health and reflection are always open.
    required: bool = True
    # The fleet's name: the audience every token must carry, so fleets that share a key still
    # refuse each other's tokens. Tokens are made for it with `sectorctl auth create-token --fleet`.
    fleet: str = Field(default="sectorstorage", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    # Keys still accepted (never used to sign) while the fleet moves to a new `secret`: see
    # docs/operators.md, "Rotating the token key".
    previous_secrets: list[str] = Field(default_factory=list, repr=False)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("must be at least 32 characters (a random key, not a password)")
        return value

    @field_validator("previous_secrets")
    @classmethod
    def _previous(cls, value: list[str]) -> list[str]:
        if any(len(v) < 32 for v in value):
            raise ValueError("each key must be at least 32 characters")
        return value


class TlsConfig(BaseModel):
    """Optional TLS for the gRPC port and for calls to peers; off (plaintext) when `cert_file` is
    empty. File paths are PEM files, read at start-up (services/common/tls.py)."""

    model_config = ConfigDict(extra="forbid")

    # This service's certificate chain and private key for its listening port; both or neither.
    cert_file: str = ""
    key_file: str = ""
    # Mutual TLS: callers must present a certificate signed by this CA (workers, the manager,
    # sectorctl). Needs cert_file.
    client_ca_file: str = ""
    # CA that signed the peers' server certificates, for this service's outgoing calls (to the
    # index, manager, workers). Set: outgoing calls use TLS; empty: plaintext.
    ca_file: str = ""
    # Certificate and key this service presents on outgoing calls to peers that require mutual
    # TLS; both or neither, and only with ca_file.
    client_cert_file: str = ""
    client_key_file: str = ""

    @model_validator(mode="after")
    def _pairs(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together: set both or neither")
        if self.client_ca_file and not self.cert_file:
            raise ValueError("client_ca_file (mutual TLS) needs cert_file and key_file")
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ValueError("client_cert_file and client_key_file go together: set both or neither")
        if self.client_cert_file and not self.ca_file:
            raise ValueError("client_cert_file needs ca_file (outgoing calls are plaintext without it)")
        return self


class GrpcConfig(BaseModel):
    """The gRPC port's socket options (services/common/grpc_options.py)."""

    model_config = ConfigDict(extra="forbid")

    # Let several processes bind the same `listen` address (SO_REUSEPORT: the kernel spreads
    # connections over them), e.g. index processes on one database. Every process sharing the
    # port must set it. Off (the default): the port is this process's alone, and a second
    # service started on it is refused at start.
    reuse_port: bool = False
    # Keep-alive of every channel this process opens: a ping after this long without activity,
    # and the connection is dropped when no answer comes within keepalive_timeout_s. A server
    # accepts pings from clients this often (half of it, for slack), so clients and servers
    # of one fleet must use the same value (services/common/grpc_options.py).
    keepalive_time_s: float = Field(default=30.0, ge=0.1, le=7200)
    keepalive_timeout_s: float = Field(default=10.0, ge=0.1, le=600)
    # Longest wait between two attempts of a channel to connect again to a peer it lost. gRPC's
    # own cap is 120 s: a manager or worker restarted on the same address was then refused for up
    # to two minutes by every process that had seen it go (its channel kept failing calls at once
    # while it waited), which turned a seconds-long failover into minutes.
    reconnect_backoff_max_s: float = Field(default=2.0, ge=0.1, le=300)


class ProofsBackend(StrEnum):
    """Which proofs implementation seals, proves and verifies: the whole fleet uses one."""

    # rust_core's PoRep emulation (docs/porep-emulation.md): fast, no parameters, not Filecoin's proofs.
    EMULATED = "emulated"
    # Filecoin's own proofs through rust_filecoin (docs/filecoin-backend.md).
    FILECOIN = "filecoin"


class ProofsConfig(BaseModel):
    """`[proofs]`: the proofs backend, the same on every worker and manager (a worker of another
    backend is refused at registration), and where the filecoin backend finds its parameters."""

    model_config = ConfigDict(extra="forbid")

    backend: ProofsBackend = ProofsBackend.EMULATED
    # FIL_PROOFS_PARAMETER_CACHE for the filecoin backend; empty: the library's default
    # (/var/tmp/filecoin-proof-parameters/).
    parameter_cache: str = ""
    # FIL_PROOFS_PARENT_CACHE (SDR parents cache); empty: the library's default.
    parent_cache: str = ""
    # Largest sector size whose Groth16 parameters may be generated here when missing: random
    # parameters, NOT the network's trusted setup (tests only). 0: never (production).
    generate_parameters_up_to: int = Field(default=0, ge=0)


class ServiceConfig(BaseModel):
    """What every service shares; each service extends it with its own section."""

    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:0"
    data_dir: Path = Path("./data")
    # Seconds in-flight calls get to finish on SIGTERM before they are cancelled.
    shutdown_grace: float = Field(default=10.0, ge=0, le=3600)
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    auth: AuthConfig = AuthConfig()
    tls: TlsConfig = TlsConfig()
    grpc: GrpcConfig = GrpcConfig()
    proofs: ProofsConfig = ProofsConfig()

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)

    def secret_path(self) -> Path:
        path = Path(self.auth.secret_file)
        return path if path.is_absolute() else self.data_dir / path


ConfigT = TypeVar("ConfigT", bound=ServiceConfig)
SectionT = TypeVar("SectionT", bound=BaseModel)
# Any validated config model (the services' ServiceConfig subclasses, the dashboard's WebConfig).
ModelT = TypeVar("ModelT", bound=BaseModel)


def _env_value(text: str) -> Any:
    """Reads an environment value as a TOML literal when it is one, else as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(target: dict[str, Any], dotted: list[str], value: Any) -> None:
    node = target
    for part in dotted[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[dotted[-1]] = value


def _env_overrides(model: type[BaseModel], env: Mapping[str, str], prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """Maps `SECTORSTORAGE_A_B` onto the model's known keys (`a.b`), nested sections included."""
    keys: dict[str, list[str]] = {}

    def walk(m: type[BaseModel], path: list[str]) -> None:
        for name, field in m.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, [*path, name])
            else:
                keys[(prefix + "_".join([*path, name])).upper()] = [*path, name]

    walk(model, [])
    overrides: dict[str, Any] = {}
    for env_name, dotted in keys.items():
        if env_name in env:
            _set_dotted(overrides, dotted, _env_value(env[env_name]))
    return overrides


def section_from_env(model: type[SectionT], section: str, env: Mapping[str, str]) -> SectionT:
    """One config section from `SECTORSTORAGE_<SECTION>_*` alone (for a process without a config
    file, such as sectorctl); raises ConfigError naming the bad key."""
    data = _env_overrides(model, env, f"{ENV_PREFIX}{section.upper()}_")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or section}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid {ENV_PREFIX}{section.upper()}_* environment: {detail}") from None


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(error: ValidationError, source: dict[str, str]) -> str:
    lines = []
    for item in error.errors():
        dotted = ".".join(str(p) for p in item["loc"])
        env_name = ENV_PREFIX + dotted.replace(".", "_").upper()
        origin = source.get(dotted, "")
        where = f" (from {origin})" if origin else ""
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{dotted}'{where}: remove it or check its spelling")
        else:
            lines.append(f"config key '{dotted}' / {env_name}{where}: {item['msg']}")
    # One line (a service prints it as its only line on stderr), every bad key in it.
    return "invalid configuration: " + "; ".join(lines)


def _sources(data: Mapping[str, Any], label: str, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_sources(value, label, dotted + "."))
        else:
            out[dotted] = label
    return out


def load_config(
    model: type[ModelT],
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> ModelT:
    """Builds a validated config; raises ConfigError naming every bad key."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source: dict[str, str] = {}
    if config_file is not None:
        try:
            file_data = tomllib.loads(config_file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {config_file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
        data = _merge(data, file_data)
        source.update(_sources(file_data, str(config_file)))
    env_data = _env_overrides(model, env)
    data = _merge(data, env_data)
    source.update(_sources(env_data, "environment"))
    flag_data: dict[str, Any] = {}
    for dotted, value in (flags or {}).items():
        if value is not None:
            _set_dotted(flag_data, dotted.split("."), value)
    data = _merge(data, flag_data)
    source.update(_sources(flag_data, "command line"))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


class DatabaseConfig(BaseModel):
    """Where a service keeps durable state: embedded SQLite by default, PostgreSQL for a fleet."""

    model_config = ConfigDict(extra="forbid")

    # `sqlite:///ABSOLUTE/PATH.db`, `sqlite:RELATIVE.db` (under the data dir), or a PostgreSQL DSN
    # `postgresql://user:pass@host:5432/db`. Empty: SQLite file named after the service in the data dir.
    url: str = ""
    # Start with an empty database even when the SQLite file exists but is empty (0 bytes or no
    # tables). Off: such a file is refused at start, as it usually means a failed restore or a
    # truncated copy of a database that had data. A missing file is always a fresh start.
    init: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:", "postgresql://", "postgres://")):
            raise ValueError("must start with 'sqlite:' or 'postgresql://'")
        return value
