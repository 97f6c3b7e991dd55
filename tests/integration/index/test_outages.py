"""The index when things go away: PostgreSQL stops (RPCs answer UNAVAILABLE, then recover by
themselves when it is back), and the index itself is stopped with SIGTERM while a StorageLock
waits (the waiter is told UNAVAILABLE at once so it can retry elsewhere)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from services.common.db.pgserver import PostgresServer, find_bin_dir, start_postgres
from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from tests.support.index import SEALED, Index, attach, declare, find, rpc_error, sector

MakeIndex = Callable[..., Index]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, since the test stops it."""
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed here (no initdb): apt-get install -y postgresql")
    # Durable settings: with synchronous_commit=off a crash may lose the last commits by design.
    server = start_postgres(fast=False)
    yield server
    server.stop()


def test_postgres_outage_is_unavailable_then_recovers(make_index: MakeIndex, own_postgres: PostgresServer) -> None:
    index = make_index("postgres", db_url=own_postgres.create_database("outage"))
    stub = index.stub()
    path = attach(stub)
    declare(stub, path, 1, [SEALED])

    own_postgres.halt()
    with rpc_error(grpc.StatusCode.UNAVAILABLE, "index database unavailable"):
        declare(stub, path, 2, [SEALED])
    with rpc_error(grpc.StatusCode.UNAVAILABLE):
        find(stub, 1, [SEALED])
    own_postgres.resume()

    deadline = time.monotonic() + 20
    while True:  # back without restarting the index: broken connections are replaced
        try:
            declare(stub, path, 2, [SEALED])
            break
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, err
            time.sleep(0.2)
    assert [f.id for f in find(stub, 2, [SEALED])] == [path]
    assert [f.id for f in find(stub, 1, [SEALED])] == [path]  # nothing acknowledged was lost
    assert "Traceback" not in index.proc.log()


def test_sigterm_ends_waiting_locks_with_unavailable(make_index: MakeIndex) -> None:
    index = make_index("sqlite")
    stub = index.stub()
    stub.StorageTryLock(ipb.StorageTryLockRequest(sector=sector(3), write_types=[SEALED], owner="holder"), timeout=10)
    outcome: list[grpc.StatusCode] = []
    started = threading.Event()

    def wait() -> None:
        try:
            for _ in stub.StorageLock(
                ipb.StorageLockRequest(sector=sector(3), write_types=[SEALED], owner="waiter"), timeout=30
            ):
                started.set()
        except grpc.RpcError as err:
            outcome.append(err.code())

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert started.wait(10)
    assert index.proc.proc is not None
    index.proc.proc.terminate()
    begun = time.monotonic()
    waiter.join(15)
    assert outcome == [grpc.StatusCode.UNAVAILABLE]
    assert time.monotonic() - begun < 5
    assert index.proc.proc.wait(15) == 0
