"""The side channel's ticket book on real file descriptors: one use per ticket, expiry, the cap on
open tickets, and every descriptor closed whatever happens to its ticket (the transfers
themselves are tested between worker processes in tests/integration/test_worker_fetch.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.worker.bulk import TicketBook, TooManyTickets


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
