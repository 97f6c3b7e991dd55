"""Reliable returns across worker restarts: a result the manager could not take yet is kept in
the worker's call store and delivered after a restart; a call that was running when the worker
was killed comes back as WORKER_RESTARTED; acknowledged results are not sent again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from tests.support.fleet import StartService, start_worker
from tests.support.sectors import TICKET, sector_ref
from tests.support.worker import ManagerEndpoint, add_piece, assignment


def test_results_redelivered_after_restart(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager)
    w.attach("p", tmp_path / "p", seal=True, store=False)
    manager.refuse_returns = True
    data = {n: os.urandom(2032) for n in (1, 2)}
    calls = {n: add_piece(w, n, 2048, d) for n, d in data.items()}

    # Both results are stored and listed (pull side), none delivered while the manager refuses.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = list(w.stub.ListCallResults(worker_pb2.ListCallResultsRequest(), timeout=10))
        if len(listed) == 2:
            break
        time.sleep(0.1)
    assert sorted(r.result.call_id.id for r in listed) == sorted(c.id for c in calls.values())
    assert all(r.result.call_type == worker_pb2.CALL_TYPE_ADD_PIECE and r.result.HasField("piece") for r in listed)
    assert manager.results == {}
    # The manager acknowledges call 2 through the pull side: it is never sent again.
    acked = w.stub.AckCallResult(worker_pb2.AckCallResultRequest(call_ids=[calls[2]]), timeout=10)
    assert acked.deleted == 1

    w.proc.stop()
    manager.refuse_returns = False
    again = start_worker(start_service, index, manager, data_dir=w.proc.data_dir)
    kind, piece = again.result(calls[1], timeout=30)
    assert kind == "piece" and piece.size == 2048
    time.sleep(1.5)
    assert manager.returns.count(calls[1].id) == 1 and calls[2].id not in manager.returns
    assert list(again.stub.ListCallResults(worker_pb2.ListCallResultsRequest(), timeout=10)) == []
    # A repeated dispatch of a delivered call starts nothing and answers with the same CallId.
    header = worker_pb2.WorkerServiceAddPieceHeader(
        assignment=worker_pb2.TaskAssignment(call_id=calls[1]), sector=sector_ref(1, 2048), piece_size=2032
    )
    reply = again.stub.AddPiece(iter([worker_pb2.WorkerServiceAddPieceRequest(header=header)]), timeout=10)
    assert reply.call_id == calls[1]


@pytest.mark.parametrize("stop", ["kill", "sigterm", "sigterm-drain-timeout"])
def test_running_call_returns_worker_restarted(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path, stop: str
) -> None:
    index = start_service("index")
    env = (
        {"SECTORSTORAGE_WORKER_DRAIN_TIMEOUT_S": "0", "SECTORSTORAGE_TEST_FAULT_TASK_HANG": "PC1=1"}
        if stop == "sigterm-drain-timeout"
        else {}
    )
    w = start_worker(start_service, index, manager, env=env)
    w.attach("p", tmp_path / "p", seal=True, store=False)
    size = 8 << 20
    piece = w.ok(add_piece(w, 1, size, os.urandom(size // 128 * 127)))
    a = assignment(1)
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(
            assignment=a,
            sector=sector_ref(1, size),
            ticket=TICKET,
            pieces=[common_pb2.PieceInfo(size=size, commp=piece.commp)],
        ),
        timeout=10,
    )
    time.sleep(0.3)
    if stop == "kill":
        w.proc.kill()  # a crash in the middle of PC1
        assert a.call_id.id not in manager.results
    else:
        # A clean stop drains first (docs/worker.md, "Stopping"): the running PC1 finishes, or is
        # stopped as TEMPORARY once drain_timeout_s ran out, and that outcome is returned
        # before the process exits 0.
        assert w.proc.stop(timeout=30) == 0
        kind, value = manager.results[a.call_id.id]
        if stop == "sigterm":
            assert kind != "error", value
        else:
            assert (
                kind == "error"
                and value.code == common_pb2.TASK_ERROR_CODE_TEMPORARY
                and "drain_timeout_s" in value.message
            )
    again = start_worker(start_service, index, manager, data_dir=w.proc.data_dir)
    if stop == "kill":
        kind, error = again.result(a.call_id, timeout=30)
        assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_WORKER_RESTARTED
    # The manager learns of the new session by registration.
    deadline = time.monotonic() + 10
    while len({r.session_id for r in manager.registrations}) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len({r.session_id for r in manager.registrations}) == 2
