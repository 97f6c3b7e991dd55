"""The transfer checksum of fetches: the serving worker sends the CRC32C of exactly the bytes it
sent (computed from its file: reads.py for the gRPC streams, bulk.py for the side channel), the
fetching worker recomputes it over what it received (peers.py, bulk_client.py) and a mismatch
refuses the copy: remote_store.py then tries the next holder, declares nothing and removes the
partial download, as for a copy that fails content_check.

What it catches: bytes changed between the source's read and the fetcher's write (a bad NIC,
switch or cable past TCP's weak checksum, a buggy proxy, memory errors on either side, a bug in
the zero-copy paths). What it cannot catch: a copy already corrupt at rest on its holder, which is
checksummed as it is read; only content_check's proof catches that (sealed files and caches with
p_aux).

A peer from before the checksum sends none; its transfers are accepted with the size check alone
(`Unchecked` logs that once per peer).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class ChecksumMismatch(Exception):
    """The bytes received are not the bytes the source sent: the transfer was corrupted in
    flight, and the source is not trusted for this fetch."""


def verify(received: int, sent: int | None, what: str) -> bool:
    """Raises ChecksumMismatch when the source's CRC32C (`sent`) differs from the one of the
    bytes received; True when they were compared, False when the source sent none."""
    if sent is None:
        return False
    if received != sent:
        raise ChecksumMismatch(
            f"checksum mismatch, copy not declared: {what} CRC32C {received:#010x}, the source sent {sent:#010x}"
        )
    return True


class Unchecked:
    """Logs (once per peer, at info level) that a peer sends no checksum: an older version, whose
    transfers are checked for size only."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def note(self, peer: str, path: str) -> None:
        with self._lock:
            if peer in self._seen:
                return
            self._seen.add(peer)
        log.info(
            "the peer sends no transfer checksum (an older version): its transfers are checked for size only",
            extra={"source": peer, "path": path},
        )
