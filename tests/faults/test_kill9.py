"""kill -9 of the index, of the manager and of a worker at random points of a running batch,
each started again on the same address and data dir (the worker with the same id and paths).

The points are drawn from a seeded generator (the seed is printed; set SECTORSTORAGE_FAULT_SEED
to replay a run) as "after the clients completed k steps of the batch". The clients retry
UNAVAILABLE with back-off and send the identical request again, as a sealing state machine
does. In the end: every sector sealed exactly once (one successful run of each task), every
proof verifies, ReadPiece returns the original bytes, the sector files are not touched after the
batch, and the index holds no lock, let alone one past its lease.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.faults.helpers import (
    ClientStats,
    Sealed,
    assert_sealed_once,
    describe,
    file_digests,
    lapsed_locks,
    outcome_counts,
    read_back,
    seal,
    verify_again,
    wait_no_locks,
)
from tests.support.fleet import Fleet, StartService, WorkerSpec, make_fleet
from tests.support.sectors import P2K, P8M, TICKET, piece_data, sector

SECTORS = int(os.environ.get("SECTORSTORAGE_FAULT_SECTORS", "8"))
# A client whose reply died with the manager (killed right after it recorded the delivery) sends
# the request again and must get the same result, not a second run of the task: the window in
# which a delivered result still answers an identical request (services/manager/config.py).
MANAGER_ENV = {"SECTORSTORAGE_MANAGER_REDELIVERY_WINDOW_S": "120"}
# Short leases, so that a lock of a killed worker lapses quickly (5 s is the index's minimum).
WORKER_ENV = {"SECTORSTORAGE_WORKER_LOCK_TTL_S": "5"}


def test_kill9_index_manager_and_worker_mid_batch(start_service: StartService, tmp_path: Path) -> None:
    seed = int(os.environ.get("SECTORSTORAGE_FAULT_SEED") or random.randrange(1 << 32))
    print(f"fault seed {seed} (SECTORSTORAGE_FAULT_SEED={seed} replays it)")
    rnd = random.Random(seed)
    fleet = make_fleet(start_service, tmp_path, MANAGER_ENV)
    names = ["a", "b", "c"]
    for name in names:
        fleet.add_worker(WorkerSpec(name, cpus=2, env=WORKER_ENV))
    fleet.wait_registered()

    steps_total = SECTORS * 7
    victims = rnd.sample(["index", "manager", "worker"], 3)
    points = sorted(rnd.sample(range(1, steps_total - SECTORS), 3))
    worker_victim = rnd.choice(names)
    pauses = [rnd.uniform(0.0, 1.5) for _ in victims]
    plan = list(zip(points, victims, pauses, strict=True))
    print("plan (after k steps, kill, down for s):", plan, "worker:", worker_victim)

    done = 0
    cond = threading.Condition()
    killed: list[tuple[str, int, float]] = []
    errors: list[BaseException] = []

    def progress(step: str) -> None:
        nonlocal done
        with cond:
            done += 1
            cond.notify_all()

    def killer() -> None:
        try:
            for point, victim, pause in plan:
                with cond:
                    if not cond.wait_for(lambda: done >= point, timeout=240):
                        return
                    at = done
                if victim == "index":
                    fleet.index.kill()
                    time.sleep(pause)
                    fleet.start_index()
                elif victim == "manager":
                    fleet.manager.kill()
                    time.sleep(pause)
                    fleet.start_manager()
                else:
                    fleet.workers[worker_victim].kill()
                    time.sleep(pause)
                    fleet.start_worker(worker_victim)
                killed.append((victim, at, pause))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    stats = ClientStats()
    refs = [sector(n, P2K) for n in range(1, SECTORS + 1)]
    started = time.monotonic()
    kt = threading.Thread(target=killer, daemon=True)
    kt.start()
    with ThreadPoolExecutor(max_workers=SECTORS) as pool:
        sealed: list[Sealed] = list(
            pool.map(lambda r: seal(fleet, r, piece_data(r.id.number, P2K), stats, progress), refs)
        )
    kt.join(60)
    wall = time.monotonic() - started
    assert not errors, errors
    assert [k[0] for k in killed] == victims, killed

    # Every proof verifies (when made, and again now, on the restarted manager).
    assert all(s.verified for s in sealed)
    assert all(verify_again(fleet, s) for s in sealed)
    runs = fleet.history()
    assert_sealed_once(fleet, [r.id.number for r in refs], runs, stats)

    # No lock is left: every task released its locks, and a killed worker's lapsed.
    assert not lapsed_locks(fleet)
    assert not wait_no_locks(fleet, timeout=15)

    # The sector files: sealed replicas of the right size, all identical, not touched afterwards
    # (reading the pieces back, which may unseal, modifies no sealed or cache file and removes
    # none but a redundant copy, see below). A second
    # replica can be left where a worker was killed after another one had copied its files for
    # a finalize and before the move: at its restart its path scan declares the copy again, as
    # primary (redeclare upgrades on a can_store path, as in the reference), so the move keeps
    # it. That wastes space, loses nothing; docs/reliability.md, "left for the lead".
    roots = [fleet.tmp / f"store-{n}" for n in names]
    before = file_digests(roots)
    extra = 0
    for s in sealed:
        copies = [p for p in before if p.endswith(f"/sealed/s-t01000-{s.ref.id.number}")]
        assert copies and {before[p] for p in copies} == {before[copies[0]]} and before[copies[0]][0] == 2048, copies
        if len(copies) > 1:
            extra += len(copies) - 1
            print(
                f"sector {s.ref.id.number}: {len(copies)} identical sealed replicas {copies}\n{describe(fleet, sector=s.ref.id)}"
            )
    for s in sealed:
        assert read_back(fleet, s) == s.data, s.ref.id.number
    after = file_digests(roots)
    kept = {p: d for p, d in before.items() if "/sealed/" in p or "/cache/" in p}

    def elsewhere(path: str) -> bool:
        """An identical copy of this sector file remains in another worker's path."""
        rel = path.split("/store-", 1)[1].split("/", 1)[1]
        return any(q != path and q.endswith("/" + rel) and d == kept[path] for q, d in after.items())

    # Nothing is modified; a file may go only where it was a redundant replica (an unseal on its
    # holder removes a non-primary copy when the primary is declared elsewhere) and an identical
    # copy of it remains.
    changed = sorted(p for p in kept if after.get(p) != kept[p] and not (p not in after and elsewhere(p)))
    assert not changed, "\n".join(
        [
            f"changed by the read-back: {changed}",
            "sealed files now: " + str(sorted(p for p in after if "/sealed/" in p)),
        ]
        + [describe(fleet, sector=s.ref.id) for s in sealed if any(p.endswith(f"-{s.ref.id.number}") for p in changed)]
    )

    print(
        f"kill -9: {len(killed)} faults {killed}, {SECTORS} sectors sealed in {wall:.1f} s, "
        f"client retries {dict(stats.retries)}, task outcomes {outcome_counts(runs)}, extra replicas {extra}, sectors lost 0"
    )


def test_worker_killed_mid_pc1_leaves_no_half_written_copy(fleet: Fleet) -> None:
    """kill -9 of the worker while its PC1 writes the cache: the restarted worker removes the
    half-written cache before it announces its paths (its scan would otherwise declare it as a
    copy), and the sector's PC1 is run again and seals. (PC1 writes no sealed file: PC2 does.)"""
    fleet.add_worker(WorkerSpec("a", cpus=2, env=WORKER_ENV))
    fleet.wait_registered()
    ref = sector(1, P8M)
    data = piece_data(1, P8M)
    stub = fleet.stub()
    piece = add_piece(stub, ref, data)
    future = stub.SealPreCommit1.future(
        manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=120
    )
    cache = fleet.tmp / "store-a" / "cache" / "s-t01000-1"
    deadline = time.monotonic() + 60
    while not (cache.is_dir() and any(cache.iterdir())):
        assert time.monotonic() < deadline and not future.done(), "PC1 never started writing its cache"
        time.sleep(0.005)
    fleet.workers["a"].kill()
    assert cache.is_dir()  # a half-written cache is left
    assert not (fleet.tmp / "store-a" / "sealed" / "s-t01000-1").exists()
    fleet.start_worker("a")
    p1 = future.result()
    runs = sorted(fleet.history(task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1), key=lambda r: r.attempt)
    assert [r.outcome for r in runs] == [manager_pb2.TASK_OUTCOME_REQUEUED, manager_pb2.TASK_OUTCOME_SUCCEEDED]
    assert any("half-written outputs of an interrupted PC1" in line for line in fleet.workers["a"].output)
    p2 = stub.SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=120
    )
    assert len(p2.commitments.comm_r) == 32
