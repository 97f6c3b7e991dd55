"""The side channel's ticket book on real file descriptors: one use per ticket, expiry, the cap on
open tickets, and every descriptor closed whatever happens to its ticket (the transfers
themselves are tested between worker processes in tests/integration/worker/test_fetch.py)."""

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
    """The port takes connections before any token: at most MAX_PENDING_PER_PEER from one
    address wait for their ticket (beyond that the longest-waiting one is closed), and a peer
    that never sends its whole ticket is cut after TICKET_DEADLINE_S however it trickles; a
    ticket then still gets its bytes."""
    monkeypatch.setattr(bulk, "MAX_PENDING_PER_PEER", 2)
    monkeypatch.setattr(bulk, "TICKET_DEADLINE_S", 0.6)
    server = bulk.BulkServer(TicketBook(), ServeFault(), "127.0.0.1", 0)
    server.start()
    try:
        oldest = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        time.sleep(0.1)
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
        time.sleep(0.2)  # the third from this address evicted the one that waited longest
        assert oldest.recv(1) == b""
        extra = oldest
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


def test_receive_falls_back_to_writes_without_losing_the_piped_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that takes no splice: the bytes already moved from the socket into the pipe
    are written, and the rest comes by recv + pwrite; the file is exactly what was sent."""
    data = os.urandom(3 * (1 << 20) + 12345)
    real_splice = os.splice

    def file_refuses(
        src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None, flags: int = 0
    ) -> int:
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


def test_a_flood_of_idle_and_garbage_connections_does_not_starve_tickets(tmp_path: Path) -> None:
    """200 connections that send nothing or garbage, from the same address as the fetchers: the
    per-address cap refuses most of them at once, the waiting ones hold no thread, and every
    legitimate ticket is served right away."""
    server = bulk.BulkServer(TicketBook(), ServeFault(), "127.0.0.1", 0)
    server.start()
    flood: list[socket.socket] = []
    try:
        for i in range(200):
            try:
                s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            except OSError:
                continue
            if i % 2:
                s.sendall(os.urandom(7))  # garbage, never a whole ticket
            flood.append(s)
        threads_before = threading.active_count()
        for n in range(10):
            fd = open_file(tmp_path)
            ticket, _ = server.book.issue(fd, 0, 10)
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as ok:
                ok.sendall(ticket)
                got = b""
                while len(got) < bulk.HEADER.size + 10:
                    part = ok.recv(64)
                    if not part:
                        break
                    got += part
            # Refused at once would be b""; served means the bytes, well before the flood's deadline.
            if got:
                assert got[bulk.HEADER.size :] == b"x" * 10, n
                assert time.monotonic() - started < 1.0, n
            else:
                pytest.fail(f"ticket {n} was refused under the flood")
        assert threading.active_count() <= threads_before + 2  # the flood holds no threads
    finally:
        for s in flood:
            s.close()
        server.stop()


def served_parts(
    tmp_path: Path, data: bytes, ranges: list[tuple[int, int]]
) -> tuple[bulk.BulkServer, list[bulk_client.Part]]:
    """A side channel serving `data`, and one connected Part (ticket, range) per range."""
    src = tmp_path / "src"
    src.write_bytes(data)
    server = bulk.BulkServer(TicketBook(), ServeFault(), "127.0.0.1", 0)
    server.start()
    parts = []
    for offset, length in ranges:
        ticket, _ = server.book.issue(os.open(src, os.O_RDONLY), offset, length)
        parts.append(bulk_client.Part(bulk_client.connect(f"127.0.0.1:{server.port}"), ticket, offset, length))
    return server, parts


def test_a_file_in_several_ranges_over_several_connections(tmp_path: Path) -> None:
    """Ranges of unequal sizes, listed out of order: the file is exactly the source's bytes."""
    data = os.urandom(5 * (1 << 20) + 777)
    cut = [0, 1 << 20, 3 * (1 << 20) + 5, len(data)]
    ranges = [(cut[i], cut[i + 1] - cut[i]) for i in (2, 0, 1)]
    server, parts = served_parts(tmp_path, data, ranges)
    try:
        assert bulk_client.receive_parts(parts, tmp_path / "got", len(data)) == len(data)
        assert (tmp_path / "got").read_bytes() == data
    finally:
        for part in parts:
            part.sock.close()
        server.stop()


def test_parts_that_do_not_tile_the_file_are_refused(tmp_path: Path) -> None:
    data = os.urandom(4096)
    server, parts = served_parts(tmp_path, data, [(0, 2048), (1024, 2048)])
    try:
        with pytest.raises(ValueError):
            bulk_client.receive_parts(parts, tmp_path / "got", len(data))
        assert not (tmp_path / "got").exists()
    finally:
        for part in parts:
            part.sock.close()
        server.stop()


def test_one_range_breaking_off_breaks_the_others_at_once(tmp_path: Path) -> None:
    """One connection closes half-way (its source died): receive_parts raises that failure at
    once, the other connection, still streaming, is broken rather than waited for."""
    size = 64 << 20
    src = tmp_path / "src"
    with open(src, "wb") as f:
        f.truncate(size)
    server = bulk.BulkServer(TicketBook(), ServeFault(), "127.0.0.1", 0)
    server.start()
    good_ticket, _ = server.book.issue(os.open(src, os.O_RDONLY), size // 2, size // 2)
    good = bulk_client.Part(bulk_client.connect(f"127.0.0.1:{server.port}"), good_ticket, size // 2, size // 2)
    client, dying = socket.socketpair()

    def serve_half() -> None:
        with dying:
            assert len(dying.recv(32, socket.MSG_WAITALL)) == 32
            dying.sendall(bulk.HEADER.pack(size // 2) + bytes(1 << 20))  # then closes

    sender = threading.Thread(target=serve_half)
    sender.start()
    broken = bulk_client.Part(client, os.urandom(32), 0, size // 2)
    started = time.monotonic()
    try:
        with pytest.raises(bulk_client.TransferError, match="closed after"):
            bulk_client.receive_parts([broken, good], tmp_path / "got", size)
        assert time.monotonic() - started < bulk.IDLE_TIMEOUT_S / 2
    finally:
        sender.join(10)
        client.close()
        good.sock.close()
        server.stop()
