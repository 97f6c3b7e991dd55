"""PC1 for several sectors as one task (`[worker] pc1_batch_size`, issue 20) on real processes: an
index, a worker with batching on, and the test's ManagerEndpoint receiving each call's Return.

- Two 8 MiB PC1 calls run as ONE rust_core batch (the worker's "pc1 batch done" log names both
  calls), each call returns its own phase-1 output, and both sectors then go through PC2, C1 and
  C2 with proofs that verify; a 2 KiB PC1 sent alongside is never put with them.
- AbortCall of one call of a running batch of four, once their layer 1 is written: it comes back
  ABORTED within a second, its cache holds no file, and the one rust_core call goes on with the
  three others, which resume at layer 2 (their layer-1 files are not written again) and prove.
- a batch with one bad sector (pieces that are not its data) is rerun one by one: only that call
  fails (PERMANENT, its cache removed), its partner completes and proves.
- kill -9 of the worker mid-batch: after the restart each call comes back WORKER_RESTARTED and
  the half-written caches are removed, as for a lone PC1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from tests.support.fleet import StartService, start_worker
from tests.support.sectors import MINER, TICKET, sector_ref
from tests.support.worker import ManagerEndpoint, WorkerHandle, add_piece, assignment, log_entries, prove_on

pytestmark = pytest.mark.slow

MIB8 = 8 << 20


def batching(size: int, wait_ms: int) -> dict[str, str]:
    return {"SECTORSTORAGE_WORKER_PC1_BATCH_SIZE": str(size), "SECTORSTORAGE_WORKER_PC1_BATCH_WAIT_MS": str(wait_ms)}


def wait_until(cond: Callable[[], Any], what: str, timeout: float = 30.0, step: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def calls_of(entry: dict[str, object]) -> list[str]:
    """The calls a "pc1 batch ..." log entry names, sorted."""
    calls = entry["calls"]
    assert isinstance(calls, list)
    return sorted(str(c) for c in calls)


def key(call: common_pb2.CallId) -> str:
    return f"call:{call.sector.miner}-{call.sector.number}-{call.id}"


def pieces_for(w: WorkerHandle, numbers: list[int], size: int) -> dict[int, list[common_pb2.PieceInfo]]:
    out = {}
    for n in numbers:
        piece = w.ok(add_piece(w, n, size, os.urandom(size // 128 * 127)))
        out[n] = [common_pb2.PieceInfo(size=size, commp=piece.commp)]
    return out


def start_pc1(w: WorkerHandle, number: int, size: int, pieces: list[common_pb2.PieceInfo]) -> common_pb2.CallId:
    a = assignment(number)
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(
            assignment=a, sector=sector_ref(number, size), ticket=TICKET, pieces=pieces
        ),
        timeout=10,
    )
    return a.call_id


def pc2_and_prove(w: WorkerHandle, number: int, size: int, p1: bytes, pieces: list[common_pb2.PieceInfo]) -> None:
    ref = sector_ref(number, size)
    a = assignment(number)
    w.stub.SealPreCommit2(
        worker_pb2.WorkerServiceSealPreCommit2Request(assignment=a, sector=ref, pre_commit1_output=p1), timeout=10
    )
    prove_on(w, ref, pieces, w.ok(a.call_id), size)


def cache_files(root: Path, number: int) -> list[str]:
    cache = root / "cache" / f"s-t0{MINER}-{number}"
    if not cache.is_dir():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith(rust_core.TRASH_PREFIX))


def test_two_pc1_calls_run_as_one_batch_and_both_sectors_prove(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager, env=batching(2, 3000))
    w.attach("seal", tmp_path / "seal", seal=True, store=True)
    pieces = pieces_for(w, [1, 2], MIB8)
    small = pieces_for(w, [3], 2048)
    lone = start_pc1(w, 3, 2048, small[3])
    calls = {n: start_pc1(w, n, MIB8, pieces[n]) for n in (1, 2)}
    p1 = {n: w.ok(c) for n, c in calls.items()}
    assert p1[1] != p1[2]

    done = log_entries(w, "pc1 batch done")
    batched = [e for e in done if e["sectors"] == 2]
    assert len(batched) == 1, done
    assert calls_of(batched[0]) == sorted(key(c) for c in calls.values())
    # The 2 KiB call waited out the window and ran alone: never with the 8 MiB ones.
    w.ok(lone)
    assert [e["calls"] for e in log_entries(w, "pc1 batch done") if e["sectors"] == 1] == [[key(lone)]]
    # Each call is still a call: recorded and returned on its own.
    finished = {e["call"] for e in log_entries(w, "task done")}
    assert {key(c)[len("call:") :] for c in calls.values()} <= finished

    for n in (1, 2):
        assert len(cache_files(tmp_path / "seal", n)) == 1 + rust_core.sector_params(MIB8)["layers"]
        pc2_and_prove(w, n, MIB8, p1[n], pieces[n])


def layer1_stamp(root: Path, number: int) -> tuple[int, int, int] | None:
    """(size, inode, mtime ns) of a sector's layer-1 file, None while it is missing."""
    path = root / "cache" / f"s-t0{MINER}-{number}" / "sc-02-data-layer-1.dat"
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_ino, st.st_mtime_ns


def test_abort_of_one_call_in_a_running_batch_ends_it_and_the_rest_go_on(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager, env=batching(4, 60_000))
    seal = tmp_path / "seal"
    w.attach("seal", seal, seal=True, store=True)
    numbers = [1, 2, 3, 4]
    pieces = pieces_for(w, numbers, MIB8)
    calls = {n: start_pc1(w, n, MIB8, pieces[n]) for n in numbers}
    wait_until(lambda: log_entries(w, "pc1 batch started"), "the batch of four to start")

    def layer1_whole() -> dict[int, tuple[int, int, int]] | None:
        stamps = {n: layer1_stamp(seal, n) for n in numbers}
        if all(s is not None and s[0] == MIB8 for s in stamps.values()):
            return {n: s for n, s in stamps.items() if s is not None}
        return None

    before = wait_until(layer1_whole, "layer 1 of the four sectors", step=0.002)
    aborted_at = time.monotonic()
    assert w.stub.AbortCall(
        worker_pb2.AbortCallRequest(call_id=calls[1], reason="operator says stop"), timeout=10
    ).found
    kind, error = w.result(calls[1], timeout=5)
    returned_s = time.monotonic() - aborted_at
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_ABORTED, error
    assert "operator says stop" in error.message
    assert returned_s < 1.0
    # Nothing of the stopped sector is left or written any more.
    assert cache_files(seal, 1) == []
    assert not log_entries(w, "pc1 batch done"), "the abort came after the batch had finished: use bigger sectors"

    p1 = {n: w.ok(calls[n]) for n in (2, 3, 4)}
    # One rust_core call for all four, never restarted; the stopped call left it.
    assert len(log_entries(w, "pc1 batch started")) == 1
    done = log_entries(w, "pc1 batch done")
    assert [calls_of(e) for e in done] == [sorted(key(calls[n]) for n in numbers)]
    assert done[0]["stopped"] == [key(calls[1])]
    # The others resumed at layer 2: their layer-1 files are the ones written before the abort.
    for n in (2, 3, 4):
        assert layer1_stamp(seal, n) == before[n], f"sector {n}'s layer 1 was written again"
    time.sleep(0.5)
    assert cache_files(seal, 1) == []
    for n in (2, 3, 4):
        pc2_and_prove(w, n, MIB8, p1[n], pieces[n])


def test_worker_killed_mid_batch_returns_each_call_as_worker_restarted(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    env = batching(2, 60_000)
    w = start_worker(start_service, index, manager, env=env)
    w.attach("seal", tmp_path / "seal", seal=True, store=True)
    pieces = pieces_for(w, [1, 2], MIB8)
    calls = {n: start_pc1(w, n, MIB8, pieces[n]) for n in (1, 2)}
    wait_until(lambda: log_entries(w, "pc1 batch started"), "the batch to start")
    w.proc.kill()
    assert not any(c.id in manager.results for c in calls.values())
    again = start_worker(start_service, index, manager, env=env, data_dir=w.proc.data_dir)
    for c in calls.values():
        kind, error = again.result(c, timeout=30)
        assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_WORKER_RESTARTED, error
    for n in (1, 2):
        assert cache_files(tmp_path / "seal", n) == []


def test_a_bad_sector_fails_alone_and_its_batch_partner_completes(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager, env=batching(2, 60_000))
    w.attach("seal", tmp_path / "seal", seal=True, store=True)
    pieces = pieces_for(w, [1, 2], 2048)
    wrong = [common_pb2.PieceInfo(size=2048, commp=bytes(31) + b"\x01")]  # not sector 2's data
    calls = {1: start_pc1(w, 1, 2048, pieces[1]), 2: start_pc1(w, 2, 2048, wrong)}
    kind, error = w.result(calls[2])
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_PERMANENT, error
    p1 = w.ok(calls[1])
    failed = log_entries(w, "pc1 batch failed; its sectors run one by one")
    assert len(failed) == 1 and "sector number 2" in str(failed[0]["error"])
    assert cache_files(tmp_path / "seal", 2) == []
    pc2_and_prove(w, 1, 2048, p1, pieces[1])
