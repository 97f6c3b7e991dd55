"""Token creation and verification (the interceptor is tested against live services)."""

import time
from pathlib import Path

import jwt
import pytest

from services.common.auth import AuthError, Permission, create_token, load_or_create_secret, verify_token

SECRET = b"0123456789abcdef0123456789abcdef0123456789abcdef"


def test_permission_includes_lower() -> None:
    caller = verify_token(SECRET, create_token(SECRET, Permission.WRITE, subject="w"))
    assert caller.subject == "w"
    assert caller.allows(Permission.READ) and caller.allows(Permission.WRITE)
    assert not caller.allows(Permission.ADMIN)


def test_permissions_are_ordered_whatever_the_token_lists() -> None:
    """A token listing only its highest permission (as other tools write them) includes the
    lower ones: read < write < admin."""
    for listed, allowed in (
        (["admin"], set(Permission)),
        (["write"], {Permission.READ, Permission.WRITE}),
        (["read"], {Permission.READ}),
    ):
        caller = verify_token(SECRET, jwt.encode({"perms": listed, "aud": "sectorstorage"}, SECRET, algorithm="HS256"))
        assert {p for p in Permission if caller.allows(p)} == allowed, listed
    nothing = verify_token(
        SECRET, jwt.encode({"perms": ["superuser"], "aud": "sectorstorage"}, SECRET, algorithm="HS256")
    )
    assert not any(nothing.allows(p) for p in Permission)


def test_other_key_expired_and_malformed_refused() -> None:
    other = create_token(b"another-key-another-key-another-key-another", Permission.ADMIN)
    with pytest.raises(AuthError, match="signature"):
        verify_token(SECRET, other)
    expired = jwt.encode(
        {"perms": ["admin"], "aud": "sectorstorage", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256"
    )
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, expired)
    with pytest.raises(AuthError, match="malformed"):
        verify_token(SECRET, "not-a-jwt")
    no_perms = jwt.encode({"sub": "x", "aud": "sectorstorage"}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="malformed"):
        verify_token(SECRET, no_perms)
    wrong_alg = jwt.encode({"perms": ["admin"], "aud": "sectorstorage"}, SECRET, algorithm="HS384")
    with pytest.raises(AuthError):
        verify_token(SECRET, wrong_alg)


def test_audience_names_the_fleet() -> None:
    """Fleets sharing a key still refuse each other's tokens; a token naming no fleet is refused."""
    ours = create_token(SECRET, Permission.ADMIN, audience="fleet-a")
    assert verify_token(SECRET, ours, "fleet-a").allows(Permission.ADMIN)
    with pytest.raises(AuthError, match="another fleet"):
        verify_token(SECRET, ours, "fleet-b")
    legacy = jwt.encode({"perms": ["admin"]}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="names no fleet"):
        verify_token(SECRET, legacy, "fleet-a")


def test_previous_keys_are_accepted_during_a_rotation() -> None:
    old, new = b"o" * 40, b"n" * 40
    by_old = create_token(old, Permission.READ)
    assert verify_token([new, old], by_old).allows(Permission.READ)
    with pytest.raises(AuthError, match="signature"):
        verify_token([new], by_old)
    assert verify_token([new, old], create_token(new, Permission.READ)).allows(Permission.READ)


def test_parse_permission() -> None:
    assert Permission.parse(" Admin ") is Permission.ADMIN
    with pytest.raises(ValueError, match="read, write, admin"):
        Permission.parse("root")


def test_secret_file_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "auth.key"
    first = load_or_create_secret(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == first
    path.write_text("short\n")
    with pytest.raises(AuthError, match="shorter than 32"):
        load_or_create_secret(path)


def test_interceptor_caches_verified_tokens_until_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common import auth as auth_module
    from services.common.auth import AuthInterceptor

    calls = []
    real = auth_module.verify_token

    def counting(secret: object, token: str, *args: object) -> object:
        calls.append(token)
        return real(secret, token, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(auth_module, "verify_token", counting)
    interceptor = AuthInterceptor(SECRET, {"/s/M": Permission.READ})
    token = create_token(SECRET, Permission.READ, ttl_seconds=2)
    metadata = (("authorization", f"Bearer {token}"),)
    assert interceptor.check("/s/M", metadata) is None
    assert interceptor.check("/s/M", metadata) is None
    assert len(calls) == 1  # the second call used the cache
    # Past its expiry the cached entry is not trusted: the token is verified again.
    later = time.time() + 10
    monkeypatch.setattr(auth_module.time, "time", lambda: later)
    interceptor.check("/s/M", metadata)
    assert len(calls) == 2
    # A bad token is never cached as good.
    assert interceptor.check("/s/M", (("authorization", "Bearer junk"),)) is not None
