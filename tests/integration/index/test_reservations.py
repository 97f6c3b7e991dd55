"""Space reservations of paths shared by several workers (real index processes, SQLite and
PostgreSQL): reservations racing from two workers never over-commit a path, BestAlloc counts
them, a released one counts until the next health report, an abandoned one expires, and bad
requests get clear statuses."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from services.common.proto.sectorstorage.v1 import common_pb2 as cpb
from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from services.index.domain import FileType, PathType
from services.index.policy import space_needed
from tests.support.index import Index, attach, new_id, stat

HOUR = Duration(seconds=3600)


def reserve(index: Index, storage_id: str, size: int, owner: str = "w", ttl: Duration = HOUR) -> str:
    reply = index.stub().StorageReserve(
        ipb.StorageReserveRequest(storage_id=storage_id, bytes=size, owner=owner, ttl=ttl), timeout=10
    )
    return str(reply.reservation_id)


def refused(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value.code(), err.value.details() or ""  # type: ignore[attr-defined]


def alloc_ok(index: Index, storage_id: str) -> bool:
    reply = index.stub().StorageBestAlloc(
        ipb.StorageBestAllocRequest(
            types=[cpb.SECTOR_FILE_TYPE_SEALED],
            sector_size=2048,
            path_type=cpb.PATH_TYPE_SEALING,
            storage_ids=[storage_id],
        ),
        timeout=10,
    )
    return [p.id for p in reply.paths] == [storage_id]


def test_racing_reservations_never_over_commit_a_shared_path(clean: Index) -> None:
    storage_id = attach(clean.stub(), available=1_000_000)
    granted: list[int] = []
    refusals: list[tuple[grpc.StatusCode, str]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            try:
                reserve(clean, storage_id, 60_000, owner=name)
            except grpc.RpcError as exc:
                # Collected here and asserted in the test's thread: an assert in a thread only warns.
                with lock:
                    refusals.append((exc.code(), exc.details() or ""))  # type: ignore[attr-defined]
                return
            with lock:
                granted.append(60_000)

    threads = [threading.Thread(target=worker, args=(f"worker-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) <= 1_000_000 and len(granted) == 1_000_000 // 60_000
    assert [code for code, _ in refusals] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * len(threads)
    assert f"{1_000_000 - sum(granted)} bytes free with {sum(granted)} reserved by the fleet" in refusals[0][1]
    # BestAlloc counts the reservations too: the path offers exactly what is left.
    left = 1_000_000 - sum(granted)
    assert alloc_ok(clean, storage_id) == (space_needed(FileType.SEALED, 2048, PathType.SEALING) <= left)
    reserve(clean, storage_id, left - 100)  # now under any file's need
    assert not alloc_ok(clean, storage_id)


def test_release_counts_until_the_next_report_and_expiry_frees(clean: Index) -> None:
    storage_id = attach(clean.stub(), available=100_000)
    first = reserve(clean, storage_id, 99_000)
    assert not alloc_ok(clean, storage_id)
    assert (
        clean.stub()
        .StorageReleaseReservation(ipb.StorageReleaseReservationRequest(reservation_id=first), timeout=10)
        .released
    )
    assert (
        not clean.stub()
        .StorageReleaseReservation(ipb.StorageReleaseReservationRequest(reservation_id=first), timeout=10)
        .released
    )
    # Released, but the path's free space has not been reported since: it still counts.
    code, _ = refused(lambda: reserve(clean, storage_id, 20_000))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    time.sleep(2.2)
    report = ipb.StorageReportHealthRequest(storage_id=storage_id, report=cpb.HealthReport(stat=stat(100_000)))
    clean.stub().StorageReportHealth(report, timeout=10)
    second = reserve(clean, storage_id, 99_000)
    assert second
    clean.stub().StorageReleaseReservation(ipb.StorageReleaseReservationRequest(reservation_id=second), timeout=10)
    # One never released expires after its ttl.
    time.sleep(2.2)
    clean.stub().StorageReportHealth(report, timeout=10)
    reserve(clean, storage_id, 95_000, ttl=Duration(nanos=300_000_000))
    time.sleep(0.5)
    reserve(clean, storage_id, 95_000)


def test_release_with_the_paths_new_stat_frees_at_once(clean: Index) -> None:
    """A worker releasing with the path measured after it wrote its files: the reservation
    stops counting at once, and the measured figures become the path's."""
    storage_id = attach(clean.stub(), available=100_000)
    held = reserve(clean, storage_id, 99_000)
    written = stat(60_000)  # 40 000 of the reserved bytes were written
    request = ipb.StorageReleaseReservationRequest(reservation_id=held, stat=written)
    assert clean.stub().StorageReleaseReservation(request, timeout=10).released
    reserve(clean, storage_id, 59_000)
    code, details = refused(lambda: reserve(clean, storage_id, 2_000))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1000 bytes free with 59000 reserved" in details


def test_bad_reservations(clean: Index) -> None:
    storage_id = attach(clean.stub(), available=100_000)
    stub = clean.stub()
    cases = {
        "no bytes": (ipb.StorageReserveRequest(storage_id=storage_id, ttl=HOUR), grpc.StatusCode.INVALID_ARGUMENT),
        "huge": (
            ipb.StorageReserveRequest(storage_id=storage_id, bytes=2**64 - 1, ttl=HOUR),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "no ttl": (ipb.StorageReserveRequest(storage_id=storage_id, bytes=10), grpc.StatusCode.INVALID_ARGUMENT),
        "a year": (
            ipb.StorageReserveRequest(storage_id=storage_id, bytes=10, ttl=Duration(seconds=365 * 86400)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "negative ttl": (
            ipb.StorageReserveRequest(storage_id=storage_id, bytes=10, ttl=Duration(seconds=-5)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "unknown path": (ipb.StorageReserveRequest(storage_id=new_id(), bytes=10, ttl=HOUR), grpc.StatusCode.NOT_FOUND),
        "not a uuid": (ipb.StorageReserveRequest(storage_id="x", bytes=10, ttl=HOUR), grpc.StatusCode.INVALID_ARGUMENT),
    }
    for what, (request, code) in cases.items():
        got, details = refused(lambda r=request: stub.StorageReserve(r, timeout=10))
        assert got == code, (what, got, details)
    got, _ = refused(
        lambda: stub.StorageReleaseReservation(ipb.StorageReleaseReservationRequest(reservation_id="nope"), timeout=10)
    )
    assert got == grpc.StatusCode.INVALID_ARGUMENT
