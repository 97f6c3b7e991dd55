"""What the fault tests share: a client that survives a manager or index going away (retries
UNAVAILABLE with back-off and re-sends the identical request, which the manager attaches to the
same work), the whole sealing pipeline driven that way, and the end-of-test checks (sealed
once, proofs verify, bytes read back, files intact, no lapsed lock left)."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.cli.sealing import add_piece, read_piece
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, index_pb2_grpc, manager_pb2
from tests.support.auth import token
from tests.support.fleet import Fleet, summary
from tests.support.sectors import SEED, TICKET

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
# The calls every sealed sector runs, once each, by method (a TaskRun's work id starts with it).
# By method, not task type: MoveStorage (the finalize's move) and Fetch (a stage that brings
# PC1's cache to the PC2 worker when no holder can take the PC2) are both FETCH tasks.
SEAL_METHODS = (
    "AddPiece",
    "SealPreCommit1",
    "SealPreCommit2",
    "SealCommit1",
    "SealCommit2",
    "FinalizeSector",
    "MoveStorage",
)


def method_of(run: manager_pb2.TaskRun) -> str:
    return run.work_id.partition(":")[0]


@dataclass
class ClientStats:
    """How often the client had to come back (shared by all sealing threads)."""

    retries: Counter[str] = field(default_factory=Counter)
    # (sector number, step) pairs that needed at least one retry.
    retried: set[tuple[int, str]] = field(default_factory=set)


def with_backoff(
    call: Callable[[], T], what: str, stats: ClientStats | None = None, timeout: float = 180.0, number: int = 0
) -> T:
    """Calls until the manager answers: UNAVAILABLE (it is down or restarting) and CANCELLED (the
    connection broke mid-call) are retried with jittered exponential back-off, the same request
    each time; any other status is the answer."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            if code not in RETRIED or time.monotonic() > deadline:
                raise
            if stats is not None:
                stats.retries[what] += 1
                stats.retried.add((number, what))
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 2.0)


@dataclass
class Sealed:
    ref: common_pb2.SectorRef
    data: bytes
    piece: common_pb2.PieceInfo
    commitments: common_pb2.SectorCommitments
    proof: bytes
    verified: bool


def seal(
    fleet: Fleet,
    ref: common_pb2.SectorRef,
    data: bytes,
    stats: ClientStats | None = None,
    progress: Callable[[str], None] = lambda step: None,
    finalize: bool = True,
) -> Sealed:
    """AddPiece, PC1, PC2, C1, C2, VerifySeal, Finalize (unless not `finalize`) for a one-piece
    sector, each step retried until the manager answers; `progress(step)` after each."""

    def step(name: str, call: Callable[[], T]) -> T:
        out = with_backoff(call, name, stats, number=ref.id.number)
        progress(name)
        return out

    m = manager_pb2
    piece = step("AddPiece", lambda: add_piece(fleet.stub(), ref, data))
    p1 = step(
        "PC1",
        lambda: fleet.stub().SealPreCommit1(
            m.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=120
        ),
    )
    p2 = step(
        "PC2",
        lambda: fleet.stub().SealPreCommit2(
            m.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=120
        ),
    )
    comm = p2.commitments
    c1 = step(
        "C1",
        lambda: fleet.stub().SealCommit1(
            m.SealCommit1Request(
                sector=ref, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=comm.comm_r, comm_d=comm.comm_d
            ),
            timeout=120,
        ),
    )
    c2 = step(
        "C2",
        lambda: fleet.stub().SealCommit2(
            m.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=120
        ),
    )
    verdict = step(
        "Verify",
        lambda: fleet.stub().VerifySeal(
            m.VerifySealRequest(
                sector=ref, comm_r=comm.comm_r, comm_d=comm.comm_d, ticket=TICKET, seed=SEED, proof=c2.proof
            ),
            timeout=60,
        ),
    )
    if finalize:
        step("Finalize", lambda: fleet.stub().FinalizeSector(m.FinalizeSectorRequest(sector=ref), timeout=120))
    return Sealed(ref, data, piece, comm, bytes(c2.proof), verdict.valid)


def verify_again(fleet: Fleet, s: Sealed) -> bool:
    m = manager_pb2
    c = s.commitments
    reply = fleet.stub().VerifySeal(
        m.VerifySealRequest(sector=s.ref, comm_r=c.comm_r, comm_d=c.comm_d, ticket=TICKET, seed=SEED, proof=s.proof),
        timeout=60,
    )
    return bool(reply.valid)


def read_back(fleet: Fleet, s: Sealed) -> bytes:
    data, _ = with_backoff(
        lambda: read_piece(fleet.stub(), s.ref, 0, len(s.data), TICKET, s.commitments.unsealed_cid), "ReadPiece"
    )
    return data


def successes(runs: Iterable[manager_pb2.TaskRun]) -> Counter[tuple[int, str]]:
    """(sector number, method) -> successful runs."""
    return Counter((r.sector.id.number, method_of(r)) for r in runs if r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED)


def assert_sealed_once(
    fleet: Fleet, numbers: Iterable[int], runs: list[manager_pb2.TaskRun], stats: ClientStats
) -> None:
    """Every sealing call of every sector succeeded exactly once in the manager's history, no
    work succeeded twice (a Fetch stage may run again only for another move, after a crash), and
    the workers' own logs agree: each computed call finished (`task done`) at most once.

    The one legitimate exception is AddPiece: its request is a stream of the piece's bytes, which
    the manager cannot attach to an earlier work (it runs with dedup=False), so a client that lost
    the answer and streams the piece again runs it again; a first piece starts the sector over
    (older unsealed copies are removed), so the sector still has one unsealed file. AddPiece may
    then succeed once more per retry of that client, never more."""
    ok = successes(runs)
    for n in numbers:
        for method in SEAL_METHODS:
            expected = {1}
            if method == "AddPiece" and (n, "AddPiece") in stats.retried:
                expected = set(range(1, 2 + stats.retries["AddPiece"]))
            assert ok[(n, method)] in expected, (
                n,
                method,
                summary(fleet, [r for r in runs if r.sector.id.number == n]),
            )
    works = Counter(
        r.work_id for r in runs if r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED and method_of(r) != "AddPiece"
    )
    assert all(v == 1 for v in works.values()), [w for w, v in works.items() if v > 1]
    done = Counter(entry["call"] for _, entry in fleet.worker_log_events("task done"))
    assert all(v == 1 for v in done.values()), [k for k, v in done.items() if v > 1]


def file_digests(roots: Iterable[Path]) -> dict[str, tuple[int, str]]:
    """Every file under the storage roots (sector files and metadata): path -> (size, sha256)."""
    out = {}
    for root in roots:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                out[str(f)] = (f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest())
    return out


def index_stub(fleet: Fleet) -> index_pb2_grpc.IndexServiceStub:
    return index_pb2_grpc.IndexServiceStub(sync_channel(fleet.index.address, token()))


def lapsed_locks(fleet: Fleet) -> list[index_pb2.SectorLockLease]:
    """Locks the index still reports although their lease ran out."""
    now = Timestamp()
    now.GetCurrentTime()
    locks = with_backoff(
        lambda: index_stub(fleet).StorageGetLocks(index_pb2.StorageGetLocksRequest(), timeout=10).locks, "GetLocks"
    )
    return [lk for lk in locks if lk.expires_at.ToNanoseconds() < now.ToNanoseconds()]


def wait_no_locks(fleet: Fleet, timeout: float) -> list[index_pb2.SectorLockLease]:
    """Waits for the fleet to hold no lock at all (every task ended); returns what is left."""
    deadline = time.monotonic() + timeout
    while True:
        locks = list(index_stub(fleet).StorageGetLocks(index_pb2.StorageGetLocksRequest(), timeout=10).locks)
        if not locks or time.monotonic() > deadline:
            return locks
        time.sleep(0.2)


def outcome_counts(runs: Iterable[manager_pb2.TaskRun]) -> dict[str, Counter[str]]:
    """Task type short name -> outcome name -> runs: the retry summary."""
    out: dict[str, Counter[str]] = {}
    for r in runs:
        task = common_pb2.TaskType.Name(r.task_type).removeprefix("TASK_TYPE_")
        out.setdefault(task, Counter())[manager_pb2.TaskOutcome.Name(r.outcome).removeprefix("TASK_OUTCOME_")] += 1
    return out


def describe(fleet: Fleet, **kw: Any) -> str:
    return "\n".join(map(str, summary(fleet, fleet.history(**kw))))
