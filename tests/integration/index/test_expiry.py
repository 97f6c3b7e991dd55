"""Time-driven behaviour with short configured windows: paths that miss heartbeats become
unhealthy (skipped for allocation and fetching) and recover when they report again; a lease
whose holder was killed lapses and frees the lock; a renewed lease does not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from services.common.proto.sectorstorage.v1 import common_pb2 as cpb
from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from tests.integration.index.conftest import BACKENDS
from tests.support.index import (
    SEALED,
    SEALING,
    Index,
    attach,
    declare,
    find,
    rpc_error,
    sector,
    stat,
    token,
)

MakeIndex = Callable[..., Index]


@pytest.mark.parametrize("backend", BACKENDS)
def test_missed_heartbeats_make_a_path_unhealthy_until_it_reports(make_index: MakeIndex, backend: str) -> None:
    index = make_index(backend, env={"SECTORSTORAGE_INDEX_HEARTBEAT_TIMEOUT_S": "1.5"})
    stub = index.stub()
    holder = attach(stub)
    quiet = attach(stub, available=2 << 40)
    chatty = attach(stub)
    declare(stub, holder, 1, [SEALED])
    assert [
        p.id
        for p in stub.StorageBestAlloc(
            ipb.StorageBestAllocRequest(types=[SEALED], sector_size=2048, path_type=SEALING), timeout=10
        ).paths
    ][0] == quiet

    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # chatty keeps reporting; quiet and holder fall silent
        stub.StorageReportHealth(
            ipb.StorageReportHealthRequest(storage_id=chatty, report=cpb.HealthReport(stat=stat())), timeout=10
        )
        time.sleep(0.3)

    info = stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=quiet), timeout=10)
    assert not info.health.healthy and info.health.error == ""
    alloc = stub.StorageBestAlloc(
        ipb.StorageBestAllocRequest(types=[SEALED], sector_size=2048, path_type=SEALING, include_rejected=True),
        timeout=10,
    )
    assert [p.id for p in alloc.paths] == [chatty]
    reasons = {r.storage_id: r.reason for r in alloc.rejected}
    assert reasons[quiet].startswith("unhealthy: last heartbeat") and "timeout 1.5s" in reasons[quiet]
    found = find(stub, 1, [SEALED], allow_fetch=True)
    assert [(f.id, f.healthy, f.fetch_candidate) for f in found] == [(holder, False, False), (chatty, True, True)]
    listed = {p.info.id: p.health.healthy for p in stub.StorageList(ipb.StorageListRequest(), timeout=10).paths}
    assert listed == {holder: False, quiet: False, chatty: True}

    back = stub.StorageReportHealth(
        ipb.StorageReportHealthRequest(storage_id=quiet, report=cpb.HealthReport(stat=stat(2 << 40))), timeout=10
    )
    assert back.health.healthy
    alloc = stub.StorageBestAlloc(
        ipb.StorageBestAllocRequest(types=[SEALED], sector_size=2048, path_type=SEALING), timeout=10
    )
    assert [p.id for p in alloc.paths] == [quiet, chatty]
    assert [f.id for f in find(stub, 1, [SEALED], allow_fetch=True) if f.fetch_candidate] == [quiet, chatty]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from services.common.client import sync_channel
    from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, index_pb2_grpc
    from google.protobuf.duration_pb2 import Duration
    stub = index_pb2_grpc.IndexServiceStub(sync_channel(sys.argv[1], sys.argv[2]))
    request = index_pb2.StorageLockRequest(sector=common_pb2.SectorId(miner=1000, number=77), write_types=[2],
                                           owner="doomed-worker", ttl=Duration(seconds=2))
    for message in stub.StorageLock(request, timeout=30):
        if message.HasField("acquired"):
            print(message.acquired.lease_id, flush=True)
    time.sleep(3600)  # holds the lock and never renews: killed by the test
    """
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lease_of_a_killed_client_expires_and_frees_the_lock(make_index: MakeIndex, backend: str) -> None:
    index = make_index(backend, env={"SECTORSTORAGE_INDEX_LOCK_TTL_MIN_S": "1"})
    stub = index.stub()
    client = subprocess.Popen([sys.executable, "-c", HOLDER, index.address, token()], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        lease_id = client.stdout.readline().strip()
        assert lease_id, "the holder client got no lease"
    finally:
        client.kill()
        client.wait(10)
    killed_at = time.monotonic()
    [held] = stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(77)), timeout=10).locks
    assert held.lease_id == lease_id and held.owner == "doomed-worker"
    assert not stub.StorageTryLock(
        ipb.StorageTryLockRequest(sector=sector(77), write_types=[SEALED], owner="next"), timeout=10
    ).acquired

    states = [
        m.WhichOneof("state")
        for m in stub.StorageLock(
            ipb.StorageLockRequest(sector=sector(77), write_types=[SEALED], owner="next"), timeout=10
        )
    ]
    waited = time.monotonic() - killed_at
    assert states[-1] == "acquired" and waited < 4, (states, waited)  # the 2 s ttl, not the 60 s default
    with rpc_error(grpc.StatusCode.NOT_FOUND, "lock is lost"):
        stub.StorageRenewLock(ipb.StorageRenewLockRequest(lease_id=lease_id), timeout=10)
    [now_held] = stub.StorageGetLocks(ipb.StorageGetLocksRequest(sector=sector(77)), timeout=10).locks
    assert now_held.owner == "next"


@pytest.mark.parametrize("backend", BACKENDS)
def test_renewed_lease_outlives_its_ttl(make_index: MakeIndex, backend: str) -> None:
    index = make_index(
        backend, env={"SECTORSTORAGE_INDEX_LOCK_TTL_MIN_S": "1", "SECTORSTORAGE_INDEX_LOCK_SWEEP_INTERVAL_S": "0.2"}
    )
    stub = index.stub()
    lease = stub.StorageTryLock(
        ipb.StorageTryLockRequest(sector=sector(5), write_types=[SEALED], owner="renewer", ttl=Duration(seconds=2)),
        timeout=10,
    ).lease
    for _ in range(8):  # 3.2 s: well past the ttl, renewed with a margin for a slow machine
        time.sleep(0.4)
        stub.StorageRenewLock(ipb.StorageRenewLockRequest(lease_id=lease.lease_id), timeout=10)
    assert not stub.StorageTryLock(
        ipb.StorageTryLockRequest(sector=sector(5), write_types=[SEALED], owner="x"), timeout=10
    ).acquired
    time.sleep(2.6)  # stops renewing: lapses, and the sweeper deletes the row
    assert stub.StorageGetLocks(ipb.StorageGetLocksRequest(), timeout=10).locks == []
    assert stub.StorageUnlock(ipb.StorageUnlockRequest(lease_id=lease.lease_id), timeout=10).released is False
    metrics = urllib.request.urlopen(f"http://{index.proc.metrics_address}/metrics", timeout=10).read().decode()
    assert "sectorstorage_index_leases_granted_total 1.0" in metrics
    assert "sectorstorage_index_leases_expired_total 1.0" in metrics
    assert "sectorstorage_index_lock_waiters 0.0" in metrics
