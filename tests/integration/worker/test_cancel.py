"""Stopping work frees the worker within a second (issue 15), seen from outside with real
processes on 512 MiB sectors: an index, real workers, and the test's ManagerEndpoint receiving
their returns and heartbeats (tests/support/worker.py).

For each way of stopping (AbortCall during PC1, PC2 and a fetch; a task timeout shorter than PC1;
SIGTERM with a short drain deadline) the test checks, within 1 s of the stop:
- the call came back ABORTED / TIMED_OUT / TEMPORARY, saying how long it ran;
- the worker process's CPU use (utime + stime from /proc/<pid>/stat) fell to idle and its RSS
  (VmRSS) fell back (PC1 holds two 512 MiB layers in memory);
- the index holds no lock on the sector (StorageGetLocks);
- the worker reports no running call in its next heartbeat, and takes the next task at once
  although it runs one task at a time (`max_tasks = 1`);
- no layer, tree or sealed file of the stopped step is left (a stopped PC2 leaves PC1's files as
  they were; a stopped fetch leaves nothing in `fetching/`).

PC1 and PC2 inputs are made without running the earlier steps: the unsealed file is a sparse
512 MiB file (zeros are valid fr32 data, one zero piece), and the PC1 output for PC2 is a cache
with a tree_d whose root is comm_d and sparse layer files (PC2 checks only those; docs/
porep-emulation.md). The whole module takes about a minute on a 2-core machine.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, worker_pb2
from tests.support.fleet import StartService, start_worker
from tests.support.inputs import SIZE, fabricated_pc1_output, sparse, unsealed_input
from tests.support.procstat import cpu_cores, rss_mib
from tests.support.sectors import MINER, TICKET, sector_ref
from tests.support.worker import ManagerEndpoint, WorkerHandle, assignment, index_stub

pytestmark = pytest.mark.slow

ST = common_pb2.SectorFileType
# One task at a time: the next dispatch is accepted only once the stopped one has let go.
ONE_TASK = {"SECTORSTORAGE_WORKER_MAX_TASKS": "1"}


# --- observing a process from outside ----------------------------------------------------------


def wait_until(cond: Callable[[], Any], what: str, timeout: float = 30.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def locks(index: Any, number: int) -> list[Any]:
    reply = index_stub(index).StorageGetLocks(
        index_pb2.StorageGetLocksRequest(sector=common_pb2.SectorId(miner=MINER, number=number)), timeout=10
    )
    return list(reply.locks)


def files_under(root: Path, number: int) -> list[str]:
    """Every file of sector `number` under a storage path (layers, trees, sealed, downloads),
    but for trash: a stopped step's files are renamed to trash names (rust_core.TRASH_PREFIX) at
    once and deleted in the background (`trash_under` checks they go)."""
    name = f"s-t0{MINER}-{number}"
    return sorted(
        rel
        for p in root.rglob("*")
        if name in (rel := str(p.relative_to(root))) and p.is_file() and rust_core.TRASH_PREFIX not in rel
    )


def trash_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{rust_core.TRASH_PREFIX}*"))


def trash_goes(root: Path) -> None:
    """The background deletion of a stopped step's files ends (seconds; it waits for writeback)."""
    wait_until(lambda: trash_under(root) == [], f"the trash under {root} to be deleted", timeout=30, step=0.1)


def last_heartbeat_running(manager: ManagerEndpoint, after: float) -> list[str] | None:
    """Call ids in the first heartbeat received after `after` (None until one came)."""
    with manager.cond:
        beats = list(manager.heartbeats)
    # Heartbeats carry no timestamp: count the ones received since `after` was taken.
    return [c.id for c in beats[-1].running_calls] if beats and time.monotonic() > after else None


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def one(start_service: StartService, manager: ManagerEndpoint, tmp_path: Path) -> tuple[Any, WorkerHandle]:
    index = start_service("index")
    worker = start_worker(start_service, index, manager, env=ONE_TASK)
    worker.attach("seal", tmp_path / "seal", seal=True, store=True)
    return index, worker


def start_pc1(
    w: WorkerHandle, number: int, pieces: list[common_pb2.PieceInfo], timeout_s: float | None = None
) -> common_pb2.CallId:
    a = assignment(number, timeout_s)
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(
            assignment=a, sector=sector_ref(number, SIZE), ticket=TICKET, pieces=pieces
        ),
        timeout=10,
    )
    return a.call_id


def wait_busy(pid: int, what: str) -> None:
    wait_until(lambda: cpu_cores(pid) > 0.5, f"{what} to use a core", timeout=30, step=0)


def assert_freed(
    index: Any, w: WorkerHandle, number: int, stopped_at: float, rss_busy: float | None = None
) -> dict[str, float]:
    """The checks of the module docstring, against a 1 s budget from `stopped_at`."""
    pid = w.proc.proc.pid if w.proc.proc is not None else 0
    figures: dict[str, float] = {}
    # Idle: a 250 ms window that ends within the second.
    wait_until(
        lambda: cpu_cores(pid) < 0.1, "the worker to be idle", timeout=1.0 - (time.monotonic() - stopped_at), step=0
    )
    figures["idle_s"] = time.monotonic() - stopped_at
    if rss_busy is not None:
        # The labeling buffer is 512 MiB: falling by 350 MiB shows it went (the idle worker's own
        # RSS, ~70-80 MiB, made "by 400" fail when the busy figure was read at 469 MiB).
        assert rss_mib(pid) < rss_busy - 350, f"RSS {rss_mib(pid):.0f} MiB, {rss_busy:.0f} MiB while busy"
    assert locks(index, number) == []
    figures["freed_s"] = time.monotonic() - stopped_at
    assert figures["freed_s"] < 1.0, figures
    return figures


# --- the tests -----------------------------------------------------------------------------------


def test_abort_during_pc1_frees_the_worker_within_a_second(one: tuple[Any, WorkerHandle], tmp_path: Path) -> None:
    index, w = one
    assert w.manager is not None and w.proc.proc is not None
    pid = w.proc.proc.pid
    seal = tmp_path / "seal"
    pieces = unsealed_input(seal, 1)
    call = start_pc1(w, 1, pieces)
    wait_busy(pid, "PC1")
    # Into the labeling of layer 1: its 512 MiB buffer is in memory. (Later, once layer 1 is on
    # disk, a stop also waits for the kernel to drop 1.5 GiB of just-written files: see
    # docs/worker.md, "Stopping a task".)
    wait_until(lambda: rss_mib(pid) > 450, "PC1's layer in memory", timeout=60, step=0.1)
    rss_busy = rss_mib(pid)
    aborted_at = time.monotonic()
    assert w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=call, reason="operator says stop"), timeout=10).found
    kind, error = w.result(call, timeout=5)
    returned_s = time.monotonic() - aborted_at
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_ABORTED, error
    assert "operator says stop" in error.message and "stopped after" in error.message
    assert returned_s < 1.0
    assert_freed(index, w, 1, aborted_at, rss_busy)
    assert not w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=call), timeout=10).found
    assert files_under(seal, 1) == ["unsealed/s-t01000-1"]
    trash_goes(seal)
    # Free for the next task at once (one task at a time), which really runs.
    beat_after = time.monotonic()
    wait_until(
        lambda: last_heartbeat_running(w.manager, beat_after) == [], "a heartbeat with nothing running", timeout=3
    )  # type: ignore[arg-type]
    again = start_pc1(w, 1, pieces)
    wait_busy(pid, "the next PC1")
    assert w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=again), timeout=10).found
    assert w.result(again, timeout=5)[1].code == common_pb2.TASK_ERROR_CODE_ABORTED


def test_timeout_shorter_than_pc1_stops_it_at_the_limit(one: tuple[Any, WorkerHandle], tmp_path: Path) -> None:
    index, w = one
    assert w.proc.proc is not None
    seal = tmp_path / "seal"
    pieces = unsealed_input(seal, 2)
    started = time.monotonic()
    call = start_pc1(w, 2, pieces, timeout_s=3.0)
    kind, error = w.result(call, timeout=10)
    limit_at = started + 3.0
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_TIMED_OUT, error
    assert "timeout of 3 s" in error.message
    assert time.monotonic() - limit_at < 1.0
    assert_freed(index, w, 2, limit_at)
    assert files_under(seal, 2) == ["unsealed/s-t01000-2"]
    trash_goes(seal)


def test_abort_during_pc2_keeps_the_pc1_output_usable(one: tuple[Any, WorkerHandle], tmp_path: Path) -> None:
    index, w = one
    assert w.proc.proc is not None
    pid = w.proc.proc.pid
    seal = tmp_path / "seal"
    p1 = fabricated_pc1_output(seal, 3)
    before = files_under(seal, 3)
    a = assignment(3)
    w.stub.SealPreCommit2(
        worker_pb2.WorkerServiceSealPreCommit2Request(assignment=a, sector=sector_ref(3, SIZE), pre_commit1_output=p1),
        timeout=10,
    )
    wait_busy(pid, "PC2")
    wait_until(lambda: (seal / "sealed" / f"s-t0{MINER}-3").exists(), "PC2 writing", timeout=30)
    time.sleep(0.5)
    aborted_at = time.monotonic()
    assert w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=a.call_id), timeout=10).found
    kind, error = w.result(a.call_id, timeout=5)
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_ABORTED, error
    assert_freed(index, w, 3, aborted_at)
    # No tree_c, tree_r_last, p_aux or sealed file; tree_d and the layers as PC1 left them.
    assert files_under(seal, 3) == before
    trash_goes(seal)


def test_abort_during_a_fetch_removes_the_partial_file(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    # The source serves at 128 MiB/s: the 512 MiB fetch takes about 4 s.
    source = start_worker(
        start_service, index, None, env={"SECTORSTORAGE_TEST_FAULT_SERVE_BYTES_PER_S": str(128 << 20)}
    )
    source.attach("store", tmp_path / "src", seal=False, store=True)
    sparse(tmp_path / "src" / "sealed" / f"s-t0{MINER}-4", SIZE)
    source.stub.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(), timeout=30)
    w = start_worker(start_service, index, manager, env=ONE_TASK)
    w.attach("seal", tmp_path / "dst", seal=True, store=False)
    assert w.proc.proc is not None
    a = assignment(4)
    w.stub.Fetch(
        worker_pb2.FetchRequest(
            assignment=a,
            sector=sector_ref(4, SIZE),
            types=[ST.SECTOR_FILE_TYPE_SEALED],
            path_type=common_pb2.PATH_TYPE_SEALING,
            mode=worker_pb2.FETCH_MODE_COPY,
        ),
        timeout=10,
    )
    partial = tmp_path / "dst" / "sealed" / "fetching" / f"s-t0{MINER}-4"
    wait_until(
        lambda: partial.exists() and partial.stat().st_blocks * 512 > (64 << 20), "the download under way", timeout=30
    )
    aborted_at = time.monotonic()
    assert w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=a.call_id), timeout=10).found
    kind, error = w.result(a.call_id, timeout=5)
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_ABORTED, error
    assert_freed(index, w, 4, aborted_at)
    assert files_under(tmp_path / "dst", 4) == []
    trash_goes(tmp_path / "dst")


def test_sigterm_with_a_short_drain_deadline_stops_pc1_and_exits(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager, env={**ONE_TASK, "SECTORSTORAGE_WORKER_DRAIN_TIMEOUT_S": "1"})
    w.attach("seal", tmp_path / "seal", seal=True, store=True)
    proc = w.proc.proc
    assert proc is not None
    pieces = unsealed_input(tmp_path / "seal", 5)
    call = start_pc1(w, 5, pieces)
    wait_busy(proc.pid, "PC1")
    proc.send_signal(signal.SIGTERM)
    deadline_at = time.monotonic() + 1.0
    kind, error = w.result(call, timeout=10)
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_TEMPORARY, error
    assert "drain_timeout_s" in error.message
    assert time.monotonic() - deadline_at < 1.0
    assert locks(index, 5) == []
    assert proc.wait(10) == 0
    assert files_under(tmp_path / "seal", 5) == ["unsealed/s-t01000-5"]


def test_a_dispatch_refused_while_busy_is_accepted_right_after_the_abort(
    one: tuple[Any, WorkerHandle], tmp_path: Path
) -> None:
    """The worker's admission (max_tasks) is freed by the stop itself, not by the end of a
    rust_core call that went on running."""
    _, w = one
    assert w.proc.proc is not None
    pieces = unsealed_input(tmp_path / "seal", 6)
    call = start_pc1(w, 6, pieces)
    wait_busy(w.proc.proc.pid, "PC1")
    with pytest.raises(grpc.RpcError) as busy:
        start_pc1(w, 6, pieces)
    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=call), timeout=10)
    w.result(call, timeout=5)
    nxt = start_pc1(w, 6, pieces)
    w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=nxt), timeout=10)
    assert w.result(nxt, timeout=5)[1].code == common_pb2.TASK_ERROR_CODE_ABORTED
