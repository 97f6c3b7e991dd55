"""The side channel's ticket book on real file descriptors: one use per ticket, expiry, the cap on
open tickets, and every descriptor closed whatever happens to its ticket (the transfers
themselves are tested between worker processes in tests/integration/test_worker_fetch.py)."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from services.worker import bulk, bulk_client
from services.worker.bulk import TicketBook, TooManyTickets
from services.worker.faults import ServeFault


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def open_file(tmp_path: Path) -> int:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    return os.open(path, os.O_RDONLY)


def test_ticket_is_used_once(tmp_path: Path) -> None:
    book = TicketBook()
    fd = open_file(tmp_path)
    ticket, expires = book.issue(fd, 2, 5)
    assert len(ticket) == 32 and expires > time.time()
    grant = book.redeem(ticket)
    assert grant is not None and (grant.fd, grant.offset, grant.length) == (fd, 2, 5)
    assert book.redeem(ticket) is None and book.redeem(os.urandom(32)) is None
    os.close(fd)  # the redeemer owns it now


def test_expired_tickets_close_their_files(tmp_path: Path) -> None:
    book = TicketBook(ttl_s=0.01)
    redeemed_late, swept = open_file(tmp_path), open_file(tmp_path)
    late, _ = book.issue(redeemed_late, 0, 10)
    book.issue(swept, 0, 10)
    time.sleep(0.05)
    assert book.redeem(late) is None and not is_open(redeemed_late)
    book.sweep()
    assert not is_open(swept)


def test_cap_on_open_tickets_and_close(tmp_path: Path) -> None:
    book = TicketBook(max_open=2)
    fds = [open_file(tmp_path) for _ in range(3)]
    book.issue(fds[0], 0, 1)
    book.issue(fds[1], 0, 1)
    with pytest.raises(TooManyTickets):
        book.issue(fds[2], 0, 1)
    assert not is_open(fds[2])
    book.close()
    assert not any(is_open(fd) for fd in fds[:2])


def test_connections_without_tickets_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The port takes connections before any token: at most MAX_CONNECTIONS are served at once
    (more are closed at once), and a peer that never sends its whole ticket is cut after
    TICKET_DEADLINE_S however it trickles; a ticket then still gets its bytes."""
    monkeypatch.setattr(bulk, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(bulk, "TICKET_DEADLINE_S", 0.6)
    server = bulk.BulkServer(TicketBook(), ServeFault(), "127.0.0.1", 0)
    server.start()
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
        time.sleep(0.2)  # both accepted and holding their slots
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        assert extra.recv(1) == b""  # closed without being served
        started = time.monotonic()
        for _ in range(3):  # trickle: one byte now and then, never the whole ticket
            idle[0].sendall(b"x")
            time.sleep(0.1)
        assert idle[0].recv(1) == b"" and time.monotonic() - started < 3
        for s in (*idle, extra):
            s.close()
        time.sleep(0.8)  # the slots are free again
        fd = open_file(tmp_path)
        ticket, _ = server.book.issue(fd, 0, 10)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as ok:
            ok.sendall(ticket)
            got = b""
            while len(got) < bulk.HEADER.size + 10:
                part = ok.recv(64)
                if not part:
                    break
                got += part
        assert got[bulk.HEADER.size :] == b"x" * 10
    finally:
        server.stop()


def test_receive_falls_back_to_writes_without_losing_the_piped_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that takes no splice: the bytes already moved from the socket into the pipe
    are written, and the rest comes by recv + pwrite; the file is exactly what was sent."""
    data = os.urandom(3 * (1 << 20) + 12345)
    real_splice = os.splice

    def file_refuses(src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None, flags: int = 0) -> int:
        if offset_dst is not None:
            raise OSError(errno.EINVAL, "splice to this file system is not supported")
        return real_splice(src, dst, count, offset_src, offset_dst, flags)

    monkeypatch.setattr(os, "splice", file_refuses)
    client, server = socket.socketpair()

    def serve() -> None:
        with server:
            assert len(server.recv(32, socket.MSG_WAITALL)) == 32
            server.sendall(bulk.HEADER.pack(len(data)) + data)

    sender = threading.Thread(target=serve)
    sender.start()
    with client:
        assert bulk_client.receive(client, os.urandom(32), tmp_path / "got", len(data)) == len(data)
    sender.join(10)
    assert (tmp_path / "got").read_bytes() == data
