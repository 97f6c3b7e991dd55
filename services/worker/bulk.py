"""The bulk transfer side channel, server side: sector files sent over a plain TCP connection
with os.sendfile, because Python gRPC streaming carries a fraction of what the disk and the
loopback can (docs/benchmarks.md, "Worker").

Nothing is reachable through the channel without the authenticated gRPC API: OpenTransfer
(permission READ, as ReadSectorFile) opens the file, checks the range and issues a one-time
random ticket for exactly that open file and range, valid for a short time. A connection must
send a live ticket first; anything else is closed without a byte. Wire format, after the
client's 32-byte ticket: an 8-byte big-endian length, then that many bytes of the file, then
(when OpenTransfer asked for it and granted it: `checksum`) a 4-byte big-endian CRC32C of those
bytes; then the server closes. The client checks the length against what OpenTransfer announced,
counts every byte, and compares the CRC32C with its own over the bytes it wrote (checksum.py).

The bytes still never enter this process: sendfile sends them from the page cache while a second
thread checksums the same range with rust_core.crc32c_file (one pass over pages the send makes
hot anyway, in parallel with it); the trailer goes out once both are done.

The port needs no token, so a connection holds nothing but its socket until its ticket is
in: one thread reads every waiting connection's ticket (a selector; at most MAX_PENDING wait, at
most MAX_PENDING_PER_PEER from one address, each for at most TICKET_DEADLINE_S; over a cap the
longest-waiting one is closed), and only a redeemed ticket gets a sending thread. A flood of idle or garbage connections therefore cannot
keep a legitimate ticket from its bytes; and when the channel does refuse one (full, or the
ticket came too late), the fetching worker falls back to the gRPC stream (peers.py).

The senders run in threads with blocking sockets: sendfile moves the bytes inside the kernel,
and the event loop that serves gRPC never waits on them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import rust_core
from services.common import errors
from services.worker.faults import ServeFault

log = logging.getLogger(__name__)
TICKET_BYTES = 32
HEADER = struct.Struct(">Q")
# The CRC32C trailer after the bytes (OpenTransfer `checksum`).
TRAILER = struct.Struct(">I")
# Bytes per sendfile call (the fault hook counts between calls).
SEND_STEP = 64 << 20
# A connection that sends no ticket, or stops reading, for this long is dropped.
IDLE_TIMEOUT_S = 30.0
# The ticket must arrive within this long of the connection.
TICKET_DEADLINE_S = 2.0
# Connections waiting for their ticket, in all and from one peer address; over either, the one
# that has waited longest is closed.
MAX_PENDING = 1024
MAX_PENDING_PER_PEER = 16
# Transfers (redeemed tickets) sent at once; a ticket beyond that is refused and its fetcher
# uses the gRPC stream.
MAX_CONNECTIONS = 64
# A flood is logged as one line per this many seconds, with counts.
REFUSAL_LOG_S = 10.0


class ChannelOff(errors.FailedPrecondition):
    """FAILED_PRECONDITION: this worker runs no side channel (worker.bulk_transfer = false)."""


class TooManyTickets(errors.ResourceExhausted):
    """RESOURCE_EXHAUSTED: too many tickets are open; the caller may use ReadSectorFile."""


@dataclass
class Ticket:
    """What one ticket grants: `length` bytes of the open file `fd` from `offset`, followed by
    their CRC32C when `checksum`."""

    fd: int
    offset: int
    length: int
    deadline: float  # time.monotonic()
    checksum: bool = False


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

    def issue(self, fd: int, offset: int, length: int, checksum: bool = False) -> tuple[bytes, float]:
        """(ticket, expiry as wall-clock time); the book owns `fd` from now on (also when this
        raises). With `checksum`, the transfer ends with the CRC32C trailer."""
        self.sweep()
        ticket = secrets.token_bytes(TICKET_BYTES)
        with self._lock:
            if len(self._tickets) >= self.max_open:
                os.close(fd)
                raise TooManyTickets(
                    f"{len(self._tickets)} transfer tickets are open; retry later or use ReadSectorFile"
                )
            self._tickets[_key(ticket)] = Ticket(fd, offset, length, time.monotonic() + self.ttl_s, checksum)
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


@dataclass
class _Waiting:
    """A connection whose ticket is not all in yet."""

    host: str
    peer: str
    deadline: float
    received: bytearray = field(default_factory=bytearray)


class BulkServer:
    """The listener: one thread accepts connections and reads their tickets; each redeemed
    ticket is sent from its own thread."""

    def __init__(self, book: TicketBook, fault: ServeFault, host: str, port: int) -> None:
        self.book = book
        self.fault = fault
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(512)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self._stopped = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._waiting: dict[socket.socket, _Waiting] = {}
        self._per_peer: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._refusals_logged_at = 0.0
        self._thread = threading.Thread(target=self._gate_loop, name="bulk-accept", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
        self.book.close()

    # --- the gate: accepting connections and reading their tickets -------------------------

    def _gate_loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ, None)
        last_sweep = time.monotonic()
        try:
            while not self._stopped.is_set():
                now = time.monotonic()
                wait = min([0.5, *(w.deadline - now for w in self._waiting.values())])
                for key, _ in selector.select(max(0.0, wait)):
                    if key.data is None:
                        self._accept_all(selector)
                    else:
                        self._read_ticket(selector, key.fileobj)  # type: ignore[arg-type]
                now = time.monotonic()
                for conn in [c for c, w in self._waiting.items() if w.deadline <= now]:
                    self._drop(selector, conn, "no ticket in time")
                if now - last_sweep >= 0.5:
                    self.book.sweep()  # tickets never redeemed give their files back
                    last_sweep = now
                self._log_refusals(now)
        except Exception:
            log.exception("bulk channel: the accept loop failed; the channel is closed (fetches use the gRPC stream)")
        finally:
            for conn in list(self._waiting):
                self._drop(selector, conn, "")
            selector.close()

    def _accept_all(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: refuse, keep serving
                self._refused[f"accept failed: {exc.strerror or exc}"] += 1
                return
            host = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            # Over a cap, the connection that has waited longest goes, not the new one: a real
            # fetcher sends its ticket as soon as it connects, so it is never the oldest for long,
            # and a flood re-opening idle connections only evicts its own.
            if self._per_peer[host] >= MAX_PENDING_PER_PEER:
                self._evict_oldest(
                    selector, host, f"evicted: over {MAX_PENDING_PER_PEER} connections from {host} waiting for a ticket"
                )
            if len(self._waiting) >= MAX_PENDING:
                self._evict_oldest(selector, None, f"evicted: over {MAX_PENDING} connections waiting for a ticket")
            conn.setblocking(False)
            self._per_peer[host] += 1
            self._waiting[conn] = _Waiting(host, str(peer), time.monotonic() + TICKET_DEADLINE_S)
            selector.register(conn, selectors.EVENT_READ, True)

    def _read_ticket(self, selector: selectors.BaseSelector, conn: socket.socket) -> None:
        waiting = self._waiting.get(conn)
        if waiting is None:
            return
        try:
            part = conn.recv(TICKET_BYTES - len(waiting.received))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(selector, conn, "")
            return
        if not part:
            self._drop(selector, conn, "")
            return
        waiting.received += part
        if len(waiting.received) < TICKET_BYTES:
            return
        self._forget(selector, conn)
        grant = self.book.redeem(bytes(waiting.received))
        if grant is None:
            self._refuse(conn, "a connection without a valid ticket")
            return
        if not self._slots.acquire(blocking=False):
            os.close(grant.fd)
            self._refuse(
                conn, f"a ticket beyond {MAX_CONNECTIONS} transfers at once (its fetcher uses the gRPC stream)"
            )
            return
        conn.setblocking(True)
        try:
            threading.Thread(
                target=self._serve, args=(conn, grant, waiting.peer), name="bulk-send", daemon=True
            ).start()
        except RuntimeError:  # no thread to be had: refuse this one, keep accepting
            self._slots.release()
            os.close(grant.fd)
            self._refuse(conn, "no thread to send with")

    def _evict_oldest(self, selector: selectors.BaseSelector, host: str | None, why: str) -> None:
        candidates = [(w.deadline, c) for c, w in self._waiting.items() if host is None or w.host == host]
        if candidates:
            self._drop(selector, min(candidates, key=lambda item: item[0])[1], why)

    def _forget(self, selector: selectors.BaseSelector, conn: socket.socket) -> None:
        waiting = self._waiting.pop(conn, None)
        if waiting is not None:
            selector.unregister(conn)
            self._per_peer[waiting.host] -= 1
            if self._per_peer[waiting.host] <= 0:
                del self._per_peer[waiting.host]

    def _drop(self, selector: selectors.BaseSelector, conn: socket.socket, why: str) -> None:
        self._forget(selector, conn)
        if why:
            self._refused[why] += 1
        conn.close()

    def _refuse(self, conn: socket.socket, why: str) -> None:
        self._refused[why] += 1
        conn.close()

    def _log_refusals(self, now: float) -> None:
        if self._refused and now - self._refusals_logged_at >= REFUSAL_LOG_S:
            log.warning("bulk channel: connections closed unserved", extra={"counts": dict(self._refused)})
            self._refused.clear()
            self._refusals_logged_at = now

    # --- the senders -------------------------------------------------------------------------

    def _serve(self, conn: socket.socket, grant: Ticket, peer: str) -> None:
        try:
            with conn:
                conn.settimeout(IDLE_TIMEOUT_S)
                started = time.monotonic()
                try:
                    conn.sendall(HEADER.pack(grant.length))
                    if grant.checksum:
                        self._send_checked(conn, grant)
                    else:
                        self._send(conn, grant)
                    log.debug(
                        "bulk channel: sent",
                        extra={"peer": peer, "bytes": grant.length, "seconds": round(time.monotonic() - started, 3)},
                    )
                except OSError as exc:
                    log.warning("bulk channel: transfer broken off", extra={"peer": peer, "error": str(exc)})
        finally:
            os.close(grant.fd)
            self._slots.release()

    def _send_checked(self, conn: socket.socket, grant: Ticket) -> None:
        """The bytes, then their CRC32C, computed from the file in a second thread while
        sendfile sends them."""
        result: list[int | BaseException] = []

        def checksum() -> None:
            try:
                result.append(rust_core.crc32c_file(grant.fd, grant.offset, grant.length))
            except BaseException as exc:  # noqa: BLE001 - re-raised by the sender
                result.append(exc)

        summer = threading.Thread(target=checksum, name="bulk-crc32c", daemon=True)
        summer.start()
        try:
            self._send(conn, grant)
        finally:
            summer.join()
        crc = result[0]
        if isinstance(crc, BaseException):
            raise OSError(f"could not checksum the range sent: {crc}")
        conn.sendall(TRAILER.pack(crc))

    def _send(self, conn: socket.socket, grant: Ticket) -> None:
        step = self.fault.step(SEND_STEP)
        flip = self.fault.flip_at(grant.length)
        with open(grant.fd, "rb", closefd=False) as file:
            sent = 0
            while sent < grant.length:
                want = min(step, grant.length - sent)
                if flip is not None and sent <= flip < sent + want:
                    want = flip - sent
                    if want == 0:  # the test fault: this one byte goes out inverted
                        byte = os.pread(grant.fd, 1, grant.offset + sent)
                        conn.sendall(bytes([byte[0] ^ 0xFF]))
                        sent += 1
                        self.fault.count(1)
                        continue
                n = conn.sendfile(file, grant.offset + sent, want)
                if n == 0:
                    raise OSError(f"file ended at {grant.offset + sent}, {grant.length - sent} bytes early")
                sent += n
                self.fault.count(n)
