"""Bearer-token authentication and permission checks for every service.

Tokens are HS256-signed JWTs carrying the permissions they grant (`perms`), as Lotus API tokens
carry `Allow`. Each RPC's required permission is declared in the protos
(`option (sectorstorage.v1.required_permission)`), so the contract stays the single source of
truth: the interceptor reads it from the descriptors of the services it serves. Health and
reflection stay open so probes and grpcurl work without a token.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import grpc
import jwt
from google.protobuf.descriptor import ServiceDescriptor

OPEN_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_ALGORITHM = "HS256"
_AUTH_HEADER = "authorization"
# The audience (`aud`) of tokens when the fleet has no name of its own (`auth.fleet`).
DEFAULT_FLEET = "sectorstorage"


class Permission(IntEnum):
    """Values match `sectorstorage.v1.Permission`; a higher one includes the lower ones."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Permission:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown permission {name!r}; use one of: read, write, admin") from None


class AuthError(Exception):
    """A token is missing, malformed, expired or signed with another key."""


@dataclass(frozen=True)
class Caller:
    """Who made a call, as the token says."""

    subject: str
    permissions: frozenset[Permission]
    # Unix time the token expires at; None for a token without expiry.
    expires_at: float | None = None

    def allows(self, needed: Permission) -> bool:
        """Permissions are ordered (read < write < admin): a token listing only `admin` may
        call what needs `write` or `read`, as common.proto promises."""
        return any(granted >= needed for granted in self.permissions)


def load_or_create_secret(path: Path) -> bytes:
    """Reads the signing key, creating a random one (mode 0600) on first start."""
    if path.exists():
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise AuthError(f"signing key in {path} is shorter than 32 bytes; delete it to regenerate")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key + b"\n")
    return key


def create_token(
    secret: bytes,
    permission: Permission,
    subject: str = "sectorctl",
    ttl_seconds: float | None = None,
    audience: str = DEFAULT_FLEET,
) -> str:
    """A token granting `permission` and every lower one, for the services of one fleet (the
    audience: fleets sharing a key still do not accept each other's tokens); no expiry unless
    ttl_seconds is given."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": now,
        "aud": audience,
        "perms": [p.name.lower() for p in Permission if p <= permission],
    }
    if ttl_seconds is not None:
        claims["exp"] = now + int(ttl_seconds)
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify_token(secret: bytes | Sequence[bytes], token: str, audience: str = DEFAULT_FLEET) -> Caller:
    """The caller a token names, if it is signed by one of the keys (the current one first; the
    others are previous keys still accepted during a rotation), meant for this fleet, and not
    expired."""
    keys = [secret] if isinstance(secret, bytes) else list(secret)
    claims: dict[str, Any] | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                token, key, algorithms=[_ALGORITHM], audience=audience, options={"require": ["perms", "aud"]}
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired; create a new one (sectorctl auth create-token)") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise AuthError(
                    "token names no fleet (audience); create a new one (sectorctl auth create-token)"
                ) from None
            raise AuthError(f"malformed token: {exc}") from None
        except jwt.InvalidAudienceError:
            raise AuthError(
                f"token is for another fleet (audience), not '{audience}': create one for this fleet (auth.fleet)"
            ) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
    if claims is None:
        raise AuthError("token signature does not match this fleet's key")
    perms = claims.get("perms")
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        raise AuthError("malformed token: 'perms' must be a list of permission names")
    granted: set[Permission] = set()
    for name in perms:
        try:
            granted.add(Permission.parse(name))
        except ValueError:
            continue  # a permission from a newer version: ignore, grant nothing extra
    exp = claims.get("exp")
    return Caller(
        subject=str(claims.get("sub", "")),
        permissions=frozenset(granted),
        expires_at=float(exp) if isinstance(exp, (int, float)) else None,
    )


def method_permissions(services: Iterable[ServiceDescriptor]) -> dict[str, Permission]:
    """`/pkg.Service/Method` → required permission, from the protos' method option.

    A method without the option needs ADMIN (fail closed); a test checks none is missing.
    """
    from services.common.proto.sectorstorage.v1 import common_pb2

    table: dict[str, Permission] = {}
    for service in services:
        for method in service.methods:
            value = method.GetOptions().Extensions[common_pb2.required_permission]
            table[f"/{service.full_name}/{method.name}"] = Permission(value) if value else Permission.ADMIN
    return table


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == _AUTH_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _aborting_handler(
    template: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, details: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same streaming shape as `template` that fails with `code`."""

    async def abort(request_or_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, details)

    async def abort_stream(request_or_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, details)
        yield  # pragma: no cover - makes this an async generator

    kwargs = {
        "request_deserializer": template.request_deserializer,
        "response_serializer": template.response_serializer,
    }
    if template.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **kwargs)
    if template.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kwargs)
    if template.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    return grpc.stream_stream_rpc_method_handler(abort_stream, **kwargs)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token and the method's permission before any servicer code runs."""

    # Verified tokens are remembered (a fleet uses a handful of long-lived tokens, and checking a
    # JWT signature costs more than a typical index lookup). Bounded, and an entry is trusted only
    # until the token's own expiry.
    CACHE_SIZE = 1024

    def __init__(
        self,
        secret: bytes,
        permissions: Mapping[str, Permission],
        required: bool = True,
        audience: str = DEFAULT_FLEET,
        previous_secrets: Sequence[bytes] = (),
    ) -> None:
        self._keys = [secret, *previous_secrets]
        self._audience = audience
        self._permissions = dict(permissions)
        self._required = required
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()

    def _caller(self, token: str) -> Caller:
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None and now < cached[1]:
            self._verified.move_to_end(token)
            return cached[0]
        caller = verify_token(self._keys, token, self._audience)
        self._verified[token] = (caller, caller.expires_at if caller.expires_at is not None else float("inf"))
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return caller

    def check(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may go on, else the status to fail it with."""
        if not self._required or method.startswith(OPEN_SERVICE_PREFIXES):
            return None
        needed = self._permissions.get(method, Permission.ADMIN)
        token = bearer_token(metadata)
        if token is None:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token: send 'authorization: Bearer <token>' (sectorctl auth create-token)",
            )
        try:
            caller = self._caller(token)
        except AuthError as exc:
            return grpc.StatusCode.UNAUTHENTICATED, str(exc)
        if not caller.allows(needed):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs '{needed.name.lower()}' permission; token of '{caller.subject}' grants "
                f"{sorted(p.name.lower() for p in caller.permissions) or 'nothing'}",
            )
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        failure = self.check(handler_call_details.method, handler_call_details.invocation_metadata)
        if failure is None:
            return handler
        return _aborting_handler(handler, *failure)


class BearerToken(grpc.AuthMetadataPlugin):
    """Client side: attaches a token to every call (used by services calling each other)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        callback(((_AUTH_HEADER, f"Bearer {self._token}"),), None)


def token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a token, for insecure (plaintext) channels."""
    return ((_AUTH_HEADER, f"Bearer {token}"),)
