"""The dashboard's own users: the password check and the signed session cookie a login sets.

A cookie is `<expiry>.<hmac>`: the HMAC-SHA256 of the expiry under a key kept in the data dir
(`web-session.key`, made on first start), so it cannot be forged, ends on time, and stays valid
across restarts. Changing the password does not end sessions; deleting the key file does."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "sectorstorage_dashboard"


def load_or_create_key(path: Path) -> bytes:
    if path.exists():
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
        raise ValueError(f"{path} holds a key shorter than 32 bytes: delete it to make a new one")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key + b"\n")
    return key


@dataclass(frozen=True)
class Gate:
    """Checks passwords and session cookies."""

    password: str
    key: bytes
    ttl_s: float

    def password_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.password.encode())

    def _mac(self, expiry: str) -> str:
        return hmac.new(self.key, expiry.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        expiry = str(int((time.time() if now is None else now) + self.ttl_s))
        return f"{expiry}.{self._mac(expiry)}"

    def cookie_ok(self, value: str, now: float | None = None) -> bool:
        expiry, sep, mac = value.partition(".")
        if not sep or not expiry.isdigit() or len(expiry) > 12:
            return False
        if not hmac.compare_digest(mac, self._mac(expiry)):
            return False
        return int(expiry) > (time.time() if now is None else now)

    def basic_ok(self, header: str) -> bool:
        """`Authorization: Basic base64(user:password)`; any user name."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, sep, password = decoded.partition(":")
        return bool(sep) and self.password_ok(password)
