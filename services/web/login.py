"""The dashboard's own users: the password check and the signed session cookie a login sets.

A cookie is `<expiry>.<hmac>`: the HMAC-SHA256 of the expiry and a digest of the password under
a key kept in the data dir (`web-session.key`, made on first start), so it cannot be forged,
ends on time, stays valid across restarts, and ends when the password is changed (or the key
file deleted).

Password guessing is slowed per client address (FailedLogins): after a few wrong passwords in a
window, that address gets 429 without its password being checked until the window has passed.
A valid cookie still works meanwhile, so a guesser cannot lock out people already logged in."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
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


@dataclass
class FailedLogins:
    """Wrong passwords per client address in a sliding window: after `limit` of them within
    `window_s`, `blocked` says how long that address must wait. At most `max_addresses` are
    tracked (the oldest forgotten first), so a flood of addresses cannot grow it without bound."""

    limit: int = 10
    window_s: float = 60.0
    max_addresses: int = 10_000
    _failures: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)

    def _recent(self, address: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(address, []) if now - t < self.window_s]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def blocked(self, address: str, now: float | None = None) -> float:
        """Seconds `address` must wait before its next password is checked; 0 when it may try."""
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        if len(times) < self.limit:
            return 0.0
        return max(0.0, times[-self.limit] + self.window_s - now)

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        times.append(now)
        self._failures[address] = times[-self.limit :]
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


@dataclass(frozen=True)
class Gate:
    """Checks passwords and session cookies."""

    password: str
    key: bytes
    ttl_s: float
    failures: FailedLogins = field(default_factory=FailedLogins)

    def password_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.password.encode())

    def _mac(self, expiry: str) -> str:
        # The password's digest is signed too: a new password ends every session.
        password = hashlib.sha256(self.password.encode()).hexdigest()
        return hmac.new(self.key, f"{expiry}.{password}".encode(), hashlib.sha256).hexdigest()

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
