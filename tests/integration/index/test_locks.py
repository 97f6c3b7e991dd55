"""Sector file locks as leases: the read/write matrix, TryLock, the waiting StorageLock stream
with deadline and cancellation, renew, unlock, idempotent lease ids — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from itertools import count

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from services.common.auth import Permission
from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from services.common.proto.sectorstorage.v1 import index_pb2_grpc
from tests.support.index import CACHE, SEALED, UNSEALED, Index, rpc_error, sector

INVALID = grpc.StatusCode.INVALID_ARGUMENT
_numbers = count(1)


def fresh_sector() -> int:
    """Each test locks its own sectors (the index is shared by the module's tests)."""
    return next(_numbers) + int(time.time() * 1000) % 1_000_000 * 1000


def try_lock(
    stub: index_pb2_grpc.IndexServiceStub,
    number: int,
    read: tuple[int, ...] = (),
    write: tuple[int, ...] = (),
    owner: str = "t",
    **kw: object,
) -> ipb.StorageTryLockResponse:
    return stub.StorageTryLock(
        ipb.StorageTryLockRequest(sector=sector(number), read_types=read, write_types=write, owner=owner, **kw),
        timeout=10,
    )  # type: ignore[arg-type]


def unlock(stub: index_pb2_grpc.IndexServiceStub, lease_id: str) -> bool:
    return stub.StorageUnlock(ipb.StorageUnlockRequest(lease_id=lease_id), timeout=10).released


def test_lock_matrix_matches_the_reference(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    held = try_lock(stub, n, read=[UNSEALED])
    assert held.acquired
    # With an unsealed read held: read anything ok, write unsealed no, write sealed|cache ok.
    reader = try_lock(stub, n, read=[UNSEALED, SEALED, CACHE])
    assert reader.acquired
    blocked = try_lock(stub, n, write=[UNSEALED])
    assert not blocked.acquired and {b.lease_id for b in blocked.blocking} == {
        held.lease.lease_id,
        reader.lease.lease_id,
    }
    unlock(stub, reader.lease.lease_id)
    writer = try_lock(stub, n, write=[SEALED, CACHE])
    assert writer.acquired
    # With sealed (and cache) write held: read/write of unsealed ok, anything touching sealed no.
    assert not try_lock(stub, n, read=[SEALED]).acquired
    assert not try_lock(stub, n, write=[SEALED]).acquired
    assert not try_lock(stub, n, read=[UNSEALED, CACHE]).acquired
    unlock(stub, held.lease.lease_id)
    unsealed_writer = try_lock(stub, n, write=[UNSEALED])
    assert unsealed_writer.acquired
    # Other sectors are independent.
    assert try_lock(stub, n + 1, write=[UNSEALED, SEALED, CACHE]).acquired


def test_type_in_both_sets_is_locked_for_writing(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    both = try_lock(stub, n, read=[SEALED, CACHE], write=[SEALED])
    assert both.acquired
    [lease] = stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks
    assert list(lease.read_types) == [CACHE] and list(lease.write_types) == [SEALED]
    assert not try_lock(stub, n, read=[SEALED]).acquired
    assert try_lock(stub, n, read=[CACHE]).acquired


def test_get_locks_lists_live_leases(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    a = try_lock(stub, n, read=[SEALED], owner="worker:a/call:1")
    b = try_lock(stub, n + 1, write=[CACHE], owner="worker:b/call:2")
    mine = [
        lease
        for lease in stub.StorageGetLocks(ipb.StorageGetLocksRequest(), timeout=10).locks
        if lease.sector.number in (n, n + 1)
    ]
    assert [(x.lease_id, x.owner, x.sector.number) for x in mine] == [
        (a.lease.lease_id, "worker:a/call:1", n),
        (b.lease.lease_id, "worker:b/call:2", n + 1),
    ]
    assert mine[0].expires_at.seconds - mine[0].acquired_at.seconds == 60
    only = stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n + 1)), timeout=10).locks
    assert [x.lease_id for x in only] == [b.lease.lease_id]
    unlock(stub, a.lease.lease_id)
    assert stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks == []


def test_ttl_is_clamped_and_renew_extends(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    short = try_lock(stub, n, read=[SEALED], ttl=Duration(seconds=1))
    assert short.lease.ttl.seconds == 5
    long = try_lock(stub, n, read=[CACHE], ttl=Duration(seconds=7200))
    assert long.lease.ttl.seconds == 600
    default = try_lock(stub, n, read=[UNSEALED])
    assert default.lease.ttl.seconds == 60
    renewed = stub.StorageRenewLock(ipb.StorageRenewLockRequest(lease_id=short.lease.lease_id), timeout=10).lease
    assert renewed.ttl.seconds == 5 and renewed.expires_at.ToNanoseconds() >= short.lease.expires_at.ToNanoseconds()
    longer = stub.StorageRenewLock(
        ipb.StorageRenewLockRequest(lease_id=short.lease.lease_id, ttl=Duration(seconds=30)), timeout=10
    ).lease
    assert longer.ttl.seconds == 30
    assert longer.expires_at.ToNanoseconds() - time.time_ns() > 25 * 10**9


def test_renew_and_unlock_of_unknown_leases(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    lease = try_lock(stub, n, write=[SEALED]).lease
    assert unlock(stub, lease.lease_id) is True
    assert unlock(stub, lease.lease_id) is False  # idempotent
    assert unlock(stub, str(uuid.uuid4())) is False
    with rpc_error(grpc.StatusCode.NOT_FOUND, "lock is lost"):
        stub.StorageRenewLock(ipb.StorageRenewLockRequest(lease_id=lease.lease_id), timeout=10)
    with rpc_error(INVALID, "lease_id is required"):
        stub.StorageRenewLock(ipb.StorageRenewLockRequest(), timeout=10)
    with rpc_error(INVALID, "not a UUID"):
        stub.StorageUnlock(ipb.StorageUnlockRequest(lease_id="x"), timeout=10)


def test_lock_request_errors(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    with rpc_error(INVALID, "both empty"):
        try_lock(stub, n)
    with rpc_error(INVALID, "owner is required"):
        try_lock(stub, n, read=[SEALED], owner="")
    with rpc_error(INVALID, "not a sector file type"):
        try_lock(stub, n, read=[3])
    with rpc_error(INVALID, "lease_id"):
        try_lock(stub, n, read=[SEALED], lease_id="abc")
    with rpc_error(INVALID, "sector is required"):
        stub.StorageTryLock(ipb.StorageTryLockRequest(read_types=[SEALED], owner="t"), timeout=10)
    with rpc_error(INVALID, "owner is required"):
        list(stub.StorageLock(ipb.StorageLockRequest(sector=sector(n), read_types=[SEALED]), timeout=10))
    with rpc_error(grpc.StatusCode.PERMISSION_DENIED):
        try_lock(clean.stub(Permission.READ), n, read=[SEALED])
    assert stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks == []


def test_client_chosen_lease_id_is_idempotent(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    lease_id = str(uuid.uuid4())
    first = try_lock(stub, n, write=[SEALED], lease_id=lease_id, owner="w")
    retry = try_lock(stub, n, write=[SEALED], lease_id=lease_id, owner="w")
    assert first.acquired and retry.acquired and retry.lease == first.lease
    streamed = list(
        stub.StorageLock(
            ipb.StorageLockRequest(sector=sector(n), write_types=[SEALED], owner="w", lease_id=lease_id), timeout=10
        )
    )
    assert [m.WhichOneof("state") for m in streamed] == ["acquired"] and streamed[0].acquired.lease_id == lease_id
    with rpc_error(grpc.StatusCode.ALREADY_EXISTS, "different lock request"):
        try_lock(stub, n, read=[CACHE], lease_id=lease_id, owner="w")
    with rpc_error(grpc.StatusCode.ALREADY_EXISTS):
        try_lock(stub, n + 1, write=[SEALED], lease_id=lease_id, owner="w")
    assert len(stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_lock_stream_waits_then_acquires_on_unlock(make_index: Callable[..., Index], backend: str) -> None:
    # Waiters poll only every 30 s here: a prompt grant proves the unlock woke the waiter.
    stub = make_index(backend, env={"SECTORSTORAGE_INDEX_LOCK_RETRY_MAX_S": "30"}).stub()
    n = fresh_sector()
    holder = try_lock(stub, n, write=[SEALED], owner="holder")
    messages: list[ipb.StorageLockResponse] = []
    granted_at: list[float] = []

    def wait() -> None:
        for message in stub.StorageLock(
            ipb.StorageLockRequest(sector=sector(n), read_types=[SEALED], owner="waiter"), timeout=20
        ):
            messages.append(message)
        granted_at.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + 10
    while not messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert messages and messages[0].WhichOneof("state") == "waiting"
    assert [b.lease_id for b in messages[0].waiting.blocking] == [holder.lease.lease_id]
    assert messages[0].waiting.blocking[0].owner == "holder"
    released_at = time.monotonic()
    assert unlock(stub, holder.lease.lease_id)
    waiter.join(15)
    assert [m.WhichOneof("state") for m in messages] == ["waiting", "acquired"]
    assert granted_at[0] - released_at < 5  # woken by the unlock, not by polling
    [lease] = stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks
    assert lease.lease_id == messages[1].acquired.lease_id and lease.owner == "waiter"


def test_lock_stream_grants_at_once_when_free(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    messages = list(
        stub.StorageLock(
            ipb.StorageLockRequest(sector=sector(n), write_types=[UNSEALED], owner="w", ttl=Duration(seconds=20)),
            timeout=10,
        )
    )
    assert len(messages) == 1 and messages[0].acquired.ttl.seconds == 20


def test_lock_deadline_exceeded_names_holder(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    try_lock(stub, n, write=[CACHE], owner="slow-holder")
    start = time.monotonic()
    with rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED):
        list(stub.StorageLock(ipb.StorageLockRequest(sector=sector(n), write_types=[CACHE], owner="w"), timeout=1.0))
    assert time.monotonic() - start < 3
    assert [x.owner for x in stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks] == [
        "slow-holder"
    ]


def test_cancelled_waiter_leaves_no_lease(clean: Index) -> None:
    stub = clean.stub()
    n = fresh_sector()
    holder = try_lock(stub, n, write=[SEALED], owner="holder")
    call = stub.StorageLock(ipb.StorageLockRequest(sector=sector(n), write_types=[SEALED], owner="quitter"), timeout=30)
    first = next(call)
    assert first.WhichOneof("state") == "waiting"
    call.cancel()
    time.sleep(0.3)
    unlock(stub, holder.lease.lease_id)
    time.sleep(1.5)  # longer than one retry interval: a waiter still there would have been granted
    assert stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks == []


@pytest.mark.parametrize("writers", [8])
def test_waiting_writers_take_turns(clean: Index, writers: int) -> None:
    """Many StorageLock writers on one sector: each gets it in turn, never two at once."""
    stub = clean.stub()
    n = fresh_sector()
    holding = []
    overlaps = []
    guard = threading.Lock()

    def work(i: int) -> None:
        for message in stub.StorageLock(
            ipb.StorageLockRequest(sector=sector(n), write_types=[SEALED], owner=f"w{i}"), timeout=60
        ):
            if message.WhichOneof("state") == "acquired":
                with guard:
                    if holding:
                        overlaps.append(i)
                    holding.append(i)
                time.sleep(0.02)
                with guard:
                    holding.remove(i)
                unlock(stub, message.acquired.lease_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert overlaps == [] and holding == []
    assert stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(n)), timeout=10).locks == []
