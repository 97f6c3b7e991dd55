"""Stop latency (issue 15): the time from AbortCall to the worker having freed the task, for a
PC1, a PC2 and a fetch of a 512 MiB sector, on real processes over loopback.

"Free" is the moment the aborted call's outcome is in the worker's call store, read through
ListCallResults polled every 5 ms: by then the rust_core call has returned, its half-written
files are removed, its index locks and space reservation released and the worker's admission
slot is free; the same outcome is what frees the worker in the manager's accounting (its Return).
Each try starts the task, waits until it is really working (a core busy; for a fetch, 64 MiB on
disk), then a random 0-`--pc1-spread` s more for PC1 (so the aborts land in tree_d building and
in the labeling of layer 1), 0.3 s for PC2, aborts it, and measures. Inputs are made without the earlier steps, as in
tests/integration/worker/test_cancel.py (whose helpers this reuses).

    python bench/cancel.py [--tries 20] [--only pc1|pc2|fetch] [--workdir DIR]

Prints p50, p99 (the worst of 20 tries is their 99th percentile) and max per step, with the load
average, and from the worker's `task stopped` log lines where the time went: `call` (the rust_core
call returning after its token was cancelled), `released` (stop request to locks and reservation
released), `record` (the durable record of the outcome). docs/benchmarks.md records runs.
Target: p99 under 1 s.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.worker import Fleet, attach, load  # noqa: E402
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc  # noqa: E402
from tests.support.inputs import SIZE, fabricated_pc1_output, sparse, unsealed_input  # noqa: E402
from tests.support.procstat import cpu_cores  # noqa: E402
from tests.support.sectors import MINER, TICKET  # noqa: E402

PROOF = common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1


def ref(number: int) -> common_pb2.SectorRef:
    return common_pb2.SectorRef(id=common_pb2.SectorId(miner=MINER, number=number), proof_type=PROOF)


def new_assignment(number: int) -> worker_pb2.TaskAssignment:
    call = common_pb2.CallId(sector=common_pb2.SectorId(miner=MINER, number=number), id=str(uuid.uuid4()))
    return worker_pb2.TaskAssignment(call_id=call, attempt=1)


def outcome_stored(
    stub: worker_pb2_grpc.WorkerServiceStub, call: common_pb2.CallId, timeout: float = 30
) -> worker_pb2.StoredCallResult:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in stub.ListCallResults(worker_pb2.ListCallResultsRequest(), timeout=30):
            if item.result.call_id.id == call.id:
                stub.AckCallResult(worker_pb2.AckCallResultRequest(call_ids=[call]), timeout=30)
                return item.result
        time.sleep(0.005)
    raise TimeoutError(call.id)


def until(cond: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the task did not get going")


def abort_and_time(stub: worker_pb2_grpc.WorkerServiceStub, call: common_pb2.CallId) -> float:
    start = time.monotonic()
    stub.AbortCall(worker_pb2.AbortCallRequest(call_id=call, reason="bench"), timeout=10)
    result = outcome_stored(stub, call)
    took = time.monotonic() - start
    if result.error.code != common_pb2.TASK_ERROR_CODE_ABORTED:
        raise RuntimeError(f"expected ABORTED, got {result}")
    return took


def stop_lines(proc: object, call: common_pb2.CallId) -> dict[str, float]:
    """The worker's `task stopped` figures for a call (empty when its log line is not there)."""
    key = f"{call.sector.miner}-{call.sector.number}-{call.id}"
    for line in reversed(getattr(proc, "output", [])):
        if key in line and '"task stopped"' in line:
            try:
                entry = json.loads(line)
            except ValueError:
                return {}
            return {k: float(entry[k]) for k in ("call_return_s", "released_s", "record_s") if entry.get(k) is not None}
    return {}


def report_parts(parts: list[dict[str, float]]) -> None:
    cols = []
    for k, label in (("call_return_s", "call"), ("released_s", "released"), ("record_s", "record")):
        values = sorted(p[k] for p in parts if k in p)
        if values:
            cols.append(f"{label} p50 {statistics.median(values) * 1000:.0f} / max {values[-1] * 1000:.0f} ms")
    if cols:
        print(f"       worker log: {'; '.join(cols)}", flush=True)


def report(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    print(
        f"{name:6s} tries {len(times):3d}  p50 {statistics.median(times) * 1000:7.1f} ms  "
        f"p99 {p99 * 1000:7.1f} ms  max {ordered[-1] * 1000:7.1f} ms  "
        f"{'under' if p99 < 1 else 'OVER'} the 1 s target  (load {load()})",
        flush=True,
    )
    print(f"       all (ms, sorted): {' '.join(f'{t * 1000:.0f}' for t in ordered)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--only", choices=["pc1", "pc2", "fetch"])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--pc1-spread", type=float, default=8.0, help="PC1 aborts land 0..this many s into the run")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ss-bench-cancel-", dir=args.workdir))
    fleet = Fleet(root)
    try:
        index = fleet.start("index", "index")
        w = fleet.start("worker", "w", "--index", index.address)
        stub = fleet.stub(w)
        attach(stub, root / "seal", seal=True, store=True)
        assert w.proc is not None
        pid = w.proc.pid
        if args.only in (None, "pc1"):
            pieces = unsealed_input(root / "seal", 1)
            times, parts = [], []
            for _ in range(args.tries):
                a = new_assignment(1)
                stub.SealPreCommit1(
                    worker_pb2.WorkerServiceSealPreCommit1Request(
                        assignment=a, sector=ref(1), ticket=TICKET, pieces=pieces
                    ),
                    timeout=10,
                )
                until(lambda: cpu_cores(pid, 0.1) > 0.5)
                time.sleep(random.uniform(0, args.pc1_spread))
                times.append(abort_and_time(stub, a.call_id))
                parts.append(stop_lines(w, a.call_id))
            report("PC1", times)
            report_parts(parts)
        if args.only in (None, "pc2"):
            p1 = fabricated_pc1_output(root / "seal", 2)
            times, parts = [], []
            for _ in range(args.tries):
                a = new_assignment(2)
                stub.SealPreCommit2(
                    worker_pb2.WorkerServiceSealPreCommit2Request(assignment=a, sector=ref(2), pre_commit1_output=p1),
                    timeout=10,
                )
                until(lambda: cpu_cores(pid, 0.1) > 0.5)
                time.sleep(0.3)
                times.append(abort_and_time(stub, a.call_id))
                parts.append(stop_lines(w, a.call_id))
            report("PC2", times)
            report_parts(parts)
        if args.only in (None, "fetch"):
            src = fleet.start(
                "worker",
                "src",
                "--index",
                index.address,
                env={"SECTORSTORAGE_TEST_FAULTS": "1", "SECTORSTORAGE_TEST_FAULT_SERVE_BYTES_PER_S": str(128 << 20)},
            )
            src_stub = fleet.stub(src)
            attach(src_stub, root / "src", seal=False, store=True)
            sparse(root / "src" / "sealed" / f"s-t0{MINER}-3", SIZE)
            src_stub.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(), timeout=30)
            partial = root / "seal" / "sealed" / "fetching" / f"s-t0{MINER}-3"
            times, parts = [], []
            for _ in range(args.tries):
                a = new_assignment(3)
                stub.Fetch(
                    worker_pb2.FetchRequest(
                        assignment=a,
                        sector=ref(3),
                        types=[common_pb2.SECTOR_FILE_TYPE_SEALED],
                        path_type=common_pb2.PATH_TYPE_SEALING,
                        mode=worker_pb2.FETCH_MODE_COPY,
                    ),
                    timeout=10,
                )
                until(lambda: partial.exists() and partial.stat().st_blocks * 512 > (64 << 20))
                times.append(abort_and_time(stub, a.call_id))
                parts.append(stop_lines(w, a.call_id))
                if partial.exists():
                    raise RuntimeError("the aborted fetch left its partial file")
            report("fetch", times)
            report_parts(parts)
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
