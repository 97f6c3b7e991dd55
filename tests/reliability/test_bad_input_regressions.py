"""One test per crash the fuzzing (test_bad_input_fuzz.py) found, against live services: each
input used to end as UNKNOWN/INTERNAL with a traceback in the service's log, and now gets
INVALID_ARGUMENT naming the field to fix, without side effects.

(The file-serving fix, a type folder linked out of the storage path, is covered in
test_security.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, worker_pb2
from tests.reliability.live import LiveFleet, crashes, start_fleet

BAD_DURATIONS = [Duration(seconds=1, nanos=-1), Duration(seconds=0, nanos=10**9), Duration(seconds=2**63 - 1)]
BAD_TIMESTAMPS = [Timestamp(seconds=1, nanos=-1), Timestamp(seconds=2**62), Timestamp(seconds=-(2**62))]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFleet]:
    fleet = start_fleet(tmp_path_factory.mktemp("regressions"), seal=False)
    try:
        yield fleet
        for name, proc in fleet.processes.items():
            assert not crashes(proc.output), f"{name} logged an unhandled exception"
    finally:
        fleet.stop()


def invalid(call: object, *words: str) -> None:
    assert callable(call)
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()  # type: ignore[attr-defined]
    for word in words:
        assert word in (err.value.details() or ""), err.value.details()  # type: ignore[attr-defined]


def test_task_history_refuses_bad_since_and_sector(fleet: LiveFleet) -> None:
    m = fleet.manager_stub()
    for ts in BAD_TIMESTAMPS:
        invalid(lambda: m.TaskHistory(manager_pb2.TaskHistoryRequest(since=ts), timeout=10), "since")
    # A sector number past 2^63-1 used to overflow the database driver.
    for sid in (common_pb2.SectorId(miner=1000, number=2**64 - 1), common_pb2.SectorId(miner=2**63, number=1)):
        invalid(lambda: m.TaskHistory(manager_pb2.TaskHistoryRequest(sector=sid), timeout=10), "sector")
    assert m.TaskHistory(manager_pb2.TaskHistoryRequest(since=Timestamp(seconds=1)), timeout=10) is not None


def test_drain_worker_refuses_a_bad_timeout_before_cordoning(fleet: LiveFleet) -> None:
    m = fleet.manager_stub()
    (stat,) = m.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
    for d in [*BAD_DURATIONS, Duration(seconds=-5)]:
        invalid(
            lambda: m.DrainWorker(manager_pb2.DrainWorkerRequest(worker_id=stat.info.worker_id, timeout=d), timeout=10),
            "timeout",
        )
    (stat,) = m.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
    assert not stat.state.cordoned and not stat.state.draining


def test_returns_refuse_bad_meta_timestamps(fleet: LiveFleet) -> None:
    m = fleet.manager_stub()
    call = common_pb2.CallId(sector=common_pb2.SectorId(miner=1000, number=1), id=str(uuid.uuid4()))
    for ts in BAD_TIMESTAMPS:
        request = manager_pb2.ReturnAddPieceRequest(
            call_id=call, piece=common_pb2.PieceInfo(), meta=manager_pb2.ReturnMeta(started_at=ts)
        )
        invalid(lambda: m.ReturnAddPiece(request, timeout=10), "meta.started_at")


def test_worker_task_refuses_a_bad_assignment_timeout(fleet: LiveFleet) -> None:
    w = fleet.worker_stub()
    sector = common_pb2.SectorRef(
        id=common_pb2.SectorId(miner=1000, number=7), proof_type=common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1
    )
    for d in BAD_DURATIONS:
        assignment = worker_pb2.TaskAssignment(
            call_id=common_pb2.CallId(sector=sector.id, id=str(uuid.uuid4())), attempt=1, timeout=d
        )
        invalid(
            lambda: w.FinalizeSector(
                worker_pb2.WorkerServiceFinalizeSectorRequest(assignment=assignment, sector=sector), timeout=10
            ),
            "assignment.timeout",
        )


def test_attach_refuses_absurd_paths(fleet: LiveFleet) -> None:
    w = fleet.worker_stub()
    base = str(fleet.root / "attach")
    init = worker_pb2.StoragePathConfig(can_seal=True)
    # 2000 levels deep used to exhaust the recursion of mkdir(parents=True): INTERNAL.
    for path, words in (
        (base + "/a" * 2000, "deep"),
        (base + "/" + "n" * 300, "longer than"),
        (base + "/x" * 2100, "bytes long"),
        (base + "/x\x00y", "NUL"),
    ):
        invalid(
            lambda: w.StorageAttachLocal(worker_pb2.StorageAttachLocalRequest(path=path, init=init), timeout=10), words
        )
    assert not (fleet.root / "attach").exists()
