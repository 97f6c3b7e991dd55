"""The bulk transfer side channel, server side: sector files sent over a plain TCP connection
with os.sendfile, because Python gRPC streaming carries a fraction of what the disk and the
loopback can (docs/benchmarks.md, "Worker").

Nothing is reachable through the channel without the authenticated gRPC API: OpenTransfer
(permission READ, as ReadSectorFile) opens the file, checks the range and issues a one-time
random ticket for exactly that open file and range, valid for a short time. A connection must
send a live ticket first; anything else is closed without a byte. Wire format, after the
client's 32-byte ticket: an 8-byte big-endian length, then that many bytes of the file; then
the server closes. The client checks the length against what OpenTransfer announced and
counts every byte (the channel adds no framing of its own to get wrong).

The listener and the connections run in threads with blocking sockets: sendfile moves the
bytes inside the kernel, and the event loop that serves gRPC never waits on them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass

from services.worker.faults import ServeFault

log = logging.getLogger(__name__)
TICKET_BYTES = 32
HEADER = struct.Struct(">Q")
# Bytes per sendfile call (the fault hook counts between calls).
SEND_STEP = 64 << 20
# A connection that sends no ticket, or stops reading, for this long is dropped.
IDLE_TIMEOUT_S = 30.0
# The ticket must arrive within this long of the connection.
TICKET_DEADLINE_S = 5.0
# Connections served at once; more are closed at once (the port is reachable without a token).
MAX_CONNECTIONS = 64


class ChannelOff(Exception):
    """FAILED_PRECONDITION: this worker runs no side channel (worker.bulk_transfer = false)."""


class TooManyTickets(Exception):
    """RESOURCE_EXHAUSTED: too many tickets are open; the caller may use ReadSectorFile."""


@dataclass
class Ticket:
    """What one ticket grants: `length` bytes of the open file `fd` from `offset`."""

    fd: int
    offset: int
    length: int
    deadline: float  # time.monotonic()


def _key(ticket: bytes) -> bytes:
    # Stored by hash: a lookup's timing says nothing about the secret itself.
    return hashlib.sha256(ticket).digest()


class TicketBook:
    """The open tickets. Each owns its file descriptor, closed when the ticket is used up,
    expires or the book closes."""

    def __init__(self, ttl_s: float = 30.0, max_open: int = 256) -> None:
        self.ttl_s = ttl_s
        self.max_open = max_open
        self._lock = threading.Lock()
        self._tickets: dict[bytes, Ticket] = {}

    def issue(self, fd: int, offset: int, length: int) -> tuple[bytes, float]:
        """(ticket, expiry as wall-clock time); the book owns `fd` from now on (also when this
        raises)."""
        self.sweep()
        ticket = secrets.token_bytes(TICKET_BYTES)
        with self._lock:
            if len(self._tickets) >= self.max_open:
                os.close(fd)
                raise TooManyTickets(f"{len(self._tickets)} transfer tickets are open; retry later or use ReadSectorFile")
            self._tickets[_key(ticket)] = Ticket(fd, offset, length, time.monotonic() + self.ttl_s)
        return ticket, time.time() + self.ttl_s

    def redeem(self, ticket: bytes) -> Ticket | None:
        """The ticket's grant, once; None for an unknown, used or expired ticket."""
        with self._lock:
            grant = self._tickets.pop(_key(ticket), None)
        if grant is not None and grant.deadline < time.monotonic():
            os.close(grant.fd)
            return None
        return grant

    def sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [k for k, t in self._tickets.items() if t.deadline < now]
            grants = [self._tickets.pop(k) for k in expired]
        for grant in grants:
            os.close(grant.fd)

    def close(self) -> None:
        with self._lock:
            grants, self._tickets = list(self._tickets.values()), {}
        for grant in grants:
            os.close(grant.fd)


def _recv_exact(conn: socket.socket, n: int, deadline_s: float) -> bytes:
    """Up to n bytes, within deadline_s in all (a peer trickling bytes cannot hold the thread)."""
    data = bytearray()
    end = time.monotonic() + deadline_s
    while len(data) < n:
        left = end - time.monotonic()
        if left <= 0:
            break
        conn.settimeout(left)
        part = conn.recv(n - len(data))
        if not part:
            break
        data += part
    return bytes(data)


class BulkServer:
    """The listener: accepts connections in a thread, serves each in its own thread."""

    def __init__(self, book: TicketBook, fault: ServeFault, host: str, port: int) -> None:
        self.book = book
        self.fault = fault
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self._sock.settimeout(0.5)  # the accept loop looks at `_stopped` this often
        self.port: int = self._sock.getsockname()[1]
        self._stopped = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._thread = threading.Thread(target=self._accept_loop, name="bulk-accept", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
        self.book.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                self.book.sweep()  # tickets never redeemed give their files back
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                log.exception("bulk channel: accept failed")
                time.sleep(0.1)
                continue
            if not self._slots.acquire(blocking=False):
                log.warning("bulk channel: too many connections; closing one", extra={"peer": str(peer), "max": MAX_CONNECTIONS})
                conn.close()
                continue
            try:
                threading.Thread(target=self._serve, args=(conn, peer), name="bulk-send", daemon=True).start()
            except RuntimeError:  # no thread to be had: refuse this one, keep accepting
                self._slots.release()
                conn.close()
                log.exception("bulk channel: cannot start a thread")

    def _serve(self, conn: socket.socket, peer: object) -> None:
        try:
            self._serve_one(conn, peer)
        finally:
            self._slots.release()

    def _serve_one(self, conn: socket.socket, peer: object) -> None:
        with conn:
            try:
                grant = self.book.redeem(_recv_exact(conn, TICKET_BYTES, TICKET_DEADLINE_S))
            except OSError:
                return
            conn.settimeout(IDLE_TIMEOUT_S)
            if grant is None:
                log.warning("bulk channel: connection without a valid ticket closed", extra={"peer": str(peer)})
                return
            started = time.monotonic()
            try:
                conn.sendall(HEADER.pack(grant.length))
                self._send(conn, grant)
                log.debug("bulk channel: sent", extra={"peer": str(peer), "bytes": grant.length, "seconds": round(time.monotonic() - started, 3)})
            except OSError as exc:
                log.warning("bulk channel: transfer broken off", extra={"peer": str(peer), "error": str(exc)})
            finally:
                os.close(grant.fd)

    def _send(self, conn: socket.socket, grant: Ticket) -> None:
        step = self.fault.step(SEND_STEP)
        with open(grant.fd, "rb", closefd=False) as file:
            sent = 0
            while sent < grant.length:
                n = conn.sendfile(file, grant.offset + sent, min(step, grant.length - sent))
                if n == 0:
                    raise OSError(f"file ended at {grant.offset + sent}, {grant.length - sent} bytes early")
                sent += n
                self.fault.count(n)
