"""The scheduler core: queue order, resource checks (no overcommit of memory, threads, GPUs),
caps, selectors' preferences, events, and diagnostics (reference behaviours 1-6, 15)."""

from __future__ import annotations

import random

import pytest

from services.common.resource_override import ResourceOverride
from services.manager.accounting import Hardware, WaitReason, WorkerCapacity
from services.manager.queue import RequestState
from services.manager.resources import DEFAULT_TABLE, GiB, KiB, MiB, ResourceRow, ResourceTable, SealProof
from services.manager.scheduler import Scheduler
from services.manager.selectors import Candidates
from services.manager.tasks import TaskType, parse_task_type, queue_key
from tests.unit.manager.helpers import ALL_TYPES, DECENT, P2K, P32G, Recorder, add_worker, request

T = TaskType


# --- queue order ----------------------------------------------------------------------------


def test_eight_task_order() -> None:
    """FIN before GET before UNS before C1 before C2 before PC2 before PC1 before AP."""
    types = [T.ADD_PIECE, T.PRE_COMMIT_1, T.PRE_COMMIT_2, T.COMMIT_2, T.COMMIT_1, T.UNSEAL, T.FETCH, T.FINALIZE]
    random.Random(7).shuffle(types)
    ordered = sorted(types, key=lambda tt: queue_key(tt, 0, 1, 0))
    assert [t.short for t in ordered] == ["FIN", "GET", "UNS", "C1", "C2", "PC2", "PC1", "AP"]


def test_priority_overrides_task_order_but_not_fin_get() -> None:
    keys = {
        "AP prio 1024": queue_key(T.ADD_PIECE, 1024, 5, 0),
        "PC2": queue_key(T.PRE_COMMIT_2, 0, 1, 1),
        "FIN": queue_key(T.FINALIZE, 0, 9, 2),
        "GET prio -5": queue_key(T.FETCH, -5, 1, 3),
        "WDP": queue_key(T.GENERATE_WINDOW_POST, -100, 1, 4),
        "WNP": queue_key(T.GENERATE_WINNING_POST, -100, 1, 5),
    }
    assert sorted(keys, key=keys.__getitem__) == ["WNP", "WDP", "FIN", "GET prio -5", "AP prio 1024", "PC2"]


def test_sector_number_then_arrival() -> None:
    assert queue_key(T.PRE_COMMIT_1, 0, 3, 9) < queue_key(T.PRE_COMMIT_1, 0, 4, 1)
    assert queue_key(T.PRE_COMMIT_1, 0, 3, 1) < queue_key(T.PRE_COMMIT_1, 0, 3, 2)


def test_reference_queue_sequence() -> None:
    """Reference test: push AP, PC1, PC2, PC1, AP -> PC2, PC1, (remove 1) AP, PC1."""
    sched = Scheduler(Recorder())
    for tt in (T.ADD_PIECE, T.PRE_COMMIT_1, T.PRE_COMMIT_2, T.PRE_COMMIT_1, T.ADD_PIECE):
        sched.submit(request(tt))
    order = sched.queue.ordered()
    assert [r.shape[0].short for r in order] == ["PC2", "PC1", "PC1", "AP", "AP"]
    out = []
    for index in (0, 0, 1, 0):
        current = sched.queue.ordered()
        out.append(current[index].shape[0].short)
        sched.cancel(current[index].id)
    assert out == ["PC2", "PC1", "AP", "PC1"]


def test_parse_task_type() -> None:
    assert parse_task_type("pc1") is T.PRE_COMMIT_1
    assert parse_task_type("TASK_TYPE_COMMIT_2") is T.COMMIT_2
    assert parse_task_type("seal/v0/finalize") is T.FINALIZE
    with pytest.raises(ValueError):
        parse_task_type("PC3")


# --- resource table and checks ----------------------------------------------------------------


def test_table_numbers_from_the_reference() -> None:
    row = DEFAULT_TABLE.row((T.PRE_COMMIT_1, P32G))
    assert (row.min_memory, row.max_memory, row.max_parallelism, row.base_min_memory) == (
        60129542144,
        68719476736,
        1,
        10485760,
    )
    c2 = DEFAULT_TABLE.row((T.COMMIT_2, SealProof.STACKED_DRG_64GIB_V1_1))
    assert (c2.min_memory, c2.max_memory, c2.max_parallelism, c2.gpu_utilization, c2.base_min_memory) == (
        64424509440,
        204010946560,
        -1,
        1.0,
        68719476736,
    )
    assert DEFAULT_TABLE.row((T.PRE_COMMIT_2, SealProof.STACKED_DRG_512MIB_V1_1)).max_memory == 1610612736
    assert DEFAULT_TABLE.row((T.UNSEAL, P32G)) == DEFAULT_TABLE.row((T.PRE_COMMIT_1, P32G))
    assert DEFAULT_TABLE.row((T.FINALIZE, P32G)) == ResourceRow(0, 0, 0, 0)
    assert DEFAULT_TABLE.row((T.FETCH, P2K)).min_memory == 1 * MiB
    assert DEFAULT_TABLE.row((T.ADD_PIECE, P2K)).min_memory == 2 * KiB
    assert DEFAULT_TABLE.row((T.COMMIT_2, P2K)).gpu_utilization == 1.0


@pytest.mark.parametrize(("cpus", "threads"), [(12, 11), (16, 14), (24, 22), (32, 29), (64, 58), (128, 117), (1, 1)])
def test_multithreaded_is_92_percent(cpus: int, threads: int) -> None:
    assert DEFAULT_TABLE.row((T.PRE_COMMIT_2, P32G)).threads(cpus, on_gpu=False) == threads


def test_overrides_per_size_beat_all_sizes() -> None:
    table = ResourceTable(
        overrides=[
            ResourceOverride(T.PRE_COMMIT_1, P32G, max_concurrent=4),
            ResourceOverride(T.PRE_COMMIT_1, None, max_concurrent=2, max_parallelism=2),
        ]
    )
    assert table.row((T.PRE_COMMIT_1, P32G)).max_concurrent == 4
    assert table.row((T.PRE_COMMIT_1, P32G)).max_parallelism == 2
    assert table.row((T.PRE_COMMIT_1, P2K)).max_concurrent == 2
    assert table.row((T.PRE_COMMIT_2, P32G)).max_concurrent is None


def test_worked_example_two_pc1_fit_third_waits() -> None:
    """128 GiB RAM, 2 GiB reserved: two 32 GiB PC1 (56 GiB each) fit, a third does not until one
    ends (reference §3.4)."""
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "w")
    reqs = [request(T.PRE_COMMIT_1, number=i) for i in range(3)]
    assert [sched.submit(r) for r in reqs] == [True, True, False]
    sched.release(reqs[0].id)
    assert reqs[2].state is RequestState.ASSIGNED


def test_pc1_blocks_multithreaded_pc2_and_back() -> None:
    """With all threads going to PC2 (ParallelNum = ParallelDenom), a running PC1 blocks PC2."""
    table = ResourceTable(overrides=[ResourceOverride(T.PRE_COMMIT_2, P32G, max_parallelism=32, gpu_utilization=0.0)])
    sched = Scheduler(Recorder())
    add_worker(sched, "w", table=table)
    pc1 = request(T.PRE_COMMIT_1)
    pc2 = request(T.PRE_COMMIT_2)
    assert sched.submit(pc1)
    assert not sched.submit(pc2)
    sched.release(pc1.id)
    assert pc2.state is RequestState.ASSIGNED
    assert not sched.submit(request(T.PRE_COMMIT_1))


def test_capacity_never_overcommits_randomized() -> None:
    """Random arrivals and completions on small workers: accounted use never exceeds RAM,
    RAM+swap, threads or GPUs."""
    rng = random.Random(1)
    sched = Scheduler(Recorder())
    hardware = [
        Hardware(mem_physical=64 * GiB, mem_swap=0, mem_reserved=1 * GiB, cpus=16, gpu_ordinals=()),
        Hardware(mem_physical=256 * GiB, mem_swap=64 * GiB, mem_reserved=4 * GiB, cpus=64, gpu_ordinals=(0, 1)),
        Hardware(mem_physical=128 * GiB, mem_swap=0, mem_reserved=2 * GiB, cpus=8, gpu_ordinals=(3,)),
    ]
    for i, hw in enumerate(hardware):
        add_worker(sched, f"w{i}", hardware=hw)
    live: list[str] = []
    for step in range(3000):
        if live and rng.random() < 0.45:
            sched.release(live.pop(rng.randrange(len(live))))
        else:
            tt = rng.choice([T.PRE_COMMIT_1, T.PRE_COMMIT_2, T.COMMIT_2, T.COMMIT_1, T.ADD_PIECE])
            proof = rng.choice([P32G, SealProof.STACKED_DRG_64GIB_V1_1, SealProof.STACKED_DRG_512MIB_V1_1])
            req = request(tt, proof, number=step)
            sched.submit(req)
        live = list(sched.assigned)
        for worker in sched.workers.values():
            cap, hw = worker.capacity, worker.hardware
            assert hw.mem_reserved + cap.used_base + cap.used_min <= hw.mem_physical
            assert hw.mem_reserved + cap.used_base + cap.used_max <= hw.mem_physical + hw.mem_swap
            assert cap.cpu_used <= hw.cpus
            assert all(u <= 1.0 + 1e-9 for u in cap.gpu_used)
    # Everything still queued really does not fit anywhere it is accepted.
    for req in sched.queue.values():
        for worker in sched.workers.values():
            assert not worker.fits(req.shape)


def test_gpu_slots_one_task_per_gpu_and_ordinals() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    hw = Hardware(mem_physical=1024 * GiB, mem_swap=0, mem_reserved=0, cpus=256, gpu_ordinals=(2, 5))
    table = ResourceTable(overrides=[ResourceOverride(T.COMMIT_2, None, max_parallelism=1)])
    add_worker(sched, "g", hardware=hw, table=table)
    c2s = [request(T.COMMIT_2, number=i) for i in range(3)]
    placed = [sched.submit(r) for r in c2s]
    assert placed == [True, True, False]
    assert sorted(r.grant.gpu_ordinals for r in c2s[:2] if r.grant) == [(2,), (5,)]
    sched.release(c2s[1].id)
    assert c2s[2].grant is not None and c2s[2].grant.gpu_ordinals == c2s[1].grant.gpu_ordinals  # type: ignore[union-attr]


def test_fractional_gpu_shares_pair_up() -> None:
    sched = Scheduler(Recorder())
    hw = Hardware(mem_physical=1024 * GiB, mem_swap=0, mem_reserved=0, cpus=64, gpu_ordinals=(0, 1))
    table = ResourceTable(overrides=[ResourceOverride(T.PRE_COMMIT_2, None, gpu_utilization=0.5, max_parallelism=1)])
    add_worker(sched, "g", hardware=hw, table=table)
    reqs = [request(T.PRE_COMMIT_2, number=i) for i in range(5)]
    assert [sched.submit(r) for r in reqs] == [True, True, True, True, False]
    ordinals = [r.grant.gpu_ordinals[0] for r in reqs[:4] if r.grant]
    assert sorted(ordinals) == [0, 0, 1, 1]


def test_gpu_less_worker_runs_gpu_tasks_without_gpu_limit() -> None:
    sched = Scheduler(Recorder())
    hw = Hardware(mem_physical=1024 * GiB, mem_swap=0, mem_reserved=0, cpus=64)
    table = ResourceTable(overrides=[ResourceOverride(T.COMMIT_2, None, max_parallelism=1)])
    add_worker(sched, "cpu", hardware=hw, table=table)
    reqs = [request(T.COMMIT_2, P2K, number=i) for i in range(5)]
    assert all(sched.submit(r) for r in reqs)
    assert all(r.grant is not None and r.grant.gpu_ordinals == () for r in reqs)


def test_base_memory_held_once_per_type() -> None:
    hw = Hardware(mem_physical=100 * GiB, mem_swap=0, mem_reserved=0, cpus=64)
    cap = WorkerCapacity(hw)
    row = ResourceRow(10 * GiB, 10 * GiB, 1, 40 * GiB)
    shape = (T.COMMIT_2, P32G)
    for _ in range(6):  # 40 base + 6 * 10 = 100
        assert cap.check(shape, row) is None
        cap.allocate(shape, row)
    assert cap.check(shape, row) is not None
    # A different type with its own base must fit next to it only if its base fits too.
    other = ResourceRow(0, 0, 0, 1 * GiB)
    assert cap.check((T.PRE_COMMIT_1, P32G), other) is not None


def test_caps_limit_concurrent_tasks() -> None:
    sched = Scheduler(Recorder())
    table = ResourceTable(overrides=[ResourceOverride(T.PRE_COMMIT_1, P2K, max_concurrent=2)])
    add_worker(sched, "w", table=table)
    reqs = [request(T.PRE_COMMIT_1, P2K, number=i) for i in range(4)]
    assert [sched.submit(r) for r in reqs] == [True, True, False, False]
    diag = sched.diagnose(reqs[2])
    assert diag.reason is WaitReason.CAP_REACHED and not diag.unsatisfiable
    sched.release(reqs[0].id)
    assert reqs[2].state is RequestState.ASSIGNED and reqs[3].state is RequestState.QUEUED


def test_ignore_resources_accepts_everything() -> None:
    sched = Scheduler(Recorder())
    tiny = Hardware(mem_physical=1 * GiB, mem_swap=0, mem_reserved=0, cpus=1, ignore_resources=True)
    add_worker(sched, "w", hardware=tiny)
    assert all(sched.submit(request(T.PRE_COMMIT_1, number=i)) for i in range(10))


# --- selectors in placement -------------------------------------------------------------------


def test_disabled_task_type_never_placed() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "no-pc1", task_types=ALL_TYPES - {T.PRE_COMMIT_1})
    req = request(T.PRE_COMMIT_1, P2K)
    assert not sched.submit(req)
    diag = sched.diagnose(req)
    assert diag.unsatisfiable and diag.reason is WaitReason.TASK_TYPE_NOT_ENABLED
    add_worker(sched, "pc1", task_types={T.PRE_COMMIT_1})
    assert rec.names() == ["PC1@pc1"]


def test_unschedulable_worker_gets_nothing_until_enabled() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "w", schedulable=False)
    req = request(T.COMMIT_1, P2K)
    assert not sched.submit(req)
    diag = sched.diagnose(req)
    assert diag.reason is WaitReason.WORKER_UNAVAILABLE and not diag.unsatisfiable
    sched.set_schedulable("w", True)
    assert rec.names() == ["C1@w"]


def test_too_small_everywhere_is_unsatisfiable() -> None:
    sched = Scheduler(Recorder())
    add_worker(sched, "small", hardware=Hardware(16 * GiB, 0, 1 * GiB, 8))
    req = request(T.PRE_COMMIT_1, SealProof.STACKED_DRG_64GIB_V1_1)
    assert not sched.submit(req)
    diag = sched.diagnose(req)
    assert diag.unsatisfiable and diag.reason is WaitReason.INSUFFICIENT_RESOURCES
    assert "bytes RAM" in diag.rejections[0][2]


def test_no_workers_reason() -> None:
    sched = Scheduler(Recorder())
    req = request(T.COMMIT_2)
    sched.submit(req)
    assert sched.diagnose(req).reason is WaitReason.NO_WORKERS


def test_holder_preferred_over_idle_pool_worker() -> None:
    """Locality: a task whose files are on A runs on A even if B is idler (behaviour 3)."""
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "a")
    add_worker(sched, "b")
    sched.submit(request(T.ADD_PIECE, P2K, candidates=Candidates(preferred=("a",))))
    pc2 = request(T.PRE_COMMIT_2, P2K, candidates=Candidates(preferred=("a",), pool=frozenset({"b"})))
    sched.submit(pc2)
    assert rec.names()[-1] == "PC2@a"


def test_existing_without_fetch_waits_for_holder() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    table = ResourceTable(overrides=[ResourceOverride(T.COMMIT_1, None, max_concurrent=1)])
    add_worker(sched, "a", table=table)
    add_worker(sched, "b", table=table)
    first = request(T.COMMIT_1, P2K, candidates=Candidates(preferred=("a",)))
    second = request(T.COMMIT_1, P2K, number=1, candidates=Candidates(preferred=("a",)))
    assert sched.submit(first) and not sched.submit(second)
    diag = sched.diagnose(second)
    reasons = {wid: reason for wid, reason, _ in diag.rejections}
    assert reasons == {"a": WaitReason.CAP_REACHED, "b": WaitReason.SECTOR_FILES_ELSEWHERE}
    sched.release(first.id)
    assert rec.names() == ["C1@a", "C1@a"]


def test_fetch_pool_used_when_holder_busy() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "a")
    add_worker(sched, "b")
    # Fill a's threads with a long multithreaded PC2.
    sched.submit(request(T.PRE_COMMIT_2, P2K, candidates=Candidates(preferred=("a",))))
    pc2 = request(T.PRE_COMMIT_2, P2K, number=1, candidates=Candidates(preferred=("a",), pool=frozenset({"b"})))
    assert sched.submit(pc2)
    assert rec.names() == ["PC2@a", "PC2@b"]


def test_alloc_pool_no_storage_reason() -> None:
    sched = Scheduler(Recorder())
    add_worker(sched, "a")
    req = request(T.PRE_COMMIT_1, P2K, candidates=Candidates(reason=WaitReason.NO_STORAGE))
    assert not sched.submit(req)
    assert sched.diagnose(req).reason is WaitReason.NO_STORAGE


def test_least_loaded_worker_chosen() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    for name in ("a", "b", "c"):
        add_worker(sched, name)
    for i in range(6):
        sched.submit(request(T.PRE_COMMIT_1, number=i))
    assert sorted(w for _, w in ((r, w.id) for r, w in rec.placed)) == ["a", "a", "b", "b", "c", "c"]


def test_task_selector_prefers_specialized_worker() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "general")
    add_worker(sched, "c2-only", task_types={T.COMMIT_2})
    sched.submit(request(T.COMMIT_2, P2K))
    assert rec.names() == ["C2@c2-only"]


def test_large_pool_uses_ranking_and_respects_membership() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    for i in range(60):
        add_worker(sched, f"w{i:02d}")
    pool = frozenset(f"w{i:02d}" for i in range(30, 60))
    for i in range(90):
        sched.submit(request(T.PRE_COMMIT_1, number=i, candidates=Candidates(pool=pool)))
    used = {w.id for _, w in rec.placed}
    assert used == set(pool)
    assert len(rec.placed) == 60  # two per pool worker
    assert len(sched.queue) == 30


def test_queue_order_respected_when_worker_frees() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "w", hardware=Hardware(1 * GiB, 0, 0, 1))
    blocker = request(T.ADD_PIECE, P2K)
    sched.submit(blocker)
    waiting = [
        request(T.ADD_PIECE, P2K, number=1),
        request(T.PRE_COMMIT_1, P2K, number=2),
        request(T.PRE_COMMIT_2, P2K, number=3),
        request(T.ADD_PIECE, P2K, number=4, priority=5),
        request(T.FINALIZE, P2K, number=5),
    ]
    for r in waiting:
        sched.submit(r)
    # FIN needs no threads: it ran at once.
    assert rec.names()[-1] == "FIN@w"
    order = []
    for _ in range(4):
        current = sched.assigned
        running = [rid for rid in current if sched.assigned[rid].shape[0] is not T.FINALIZE]
        sched.release(running[0])
        order.append(rec.names()[-1])
    assert order == ["AP@w", "PC2@w", "PC1@w", "AP@w"]
    assert rec.placed[-4][0].priority == 5


def test_remove_worker_returns_its_requests() -> None:
    sched = Scheduler(Recorder())
    add_worker(sched, "a")
    reqs = [request(T.PRE_COMMIT_1, P2K, number=i) for i in range(3)]
    for r in reqs:
        sched.submit(r)
    held = sched.remove_worker("a")
    assert {r.id for r in held} == {r.id for r in reqs}
    assert not sched.assigned


def test_update_candidates_places_when_files_appear() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "a")
    req = request(T.COMMIT_1, P2K, candidates=Candidates())
    assert not sched.submit(req)
    assert sched.update_candidates(req.id, Candidates(preferred=("a",)))
    assert rec.names() == ["C1@a"]


def test_worker_resources_change_keeps_accounting() -> None:
    sched = Scheduler(Recorder())
    add_worker(sched, "a")
    req = request(T.PRE_COMMIT_1)
    sched.submit(req)
    bigger = Hardware(512 * GiB, 0, 0, 64)
    add_worker(sched, "a", hardware=bigger)
    assert sched.workers["a"].capacity.used_min == DEFAULT_TABLE.row((T.PRE_COMMIT_1, P32G)).min_memory
    sched.release(req.id)
    assert sched.workers["a"].capacity.used_min == 0


def test_full_pass_places_nothing_new_when_settled() -> None:
    sched = Scheduler(Recorder())
    add_worker(sched, "a")
    for i in range(10):
        sched.submit(request(T.PRE_COMMIT_1, number=i))
    assert sched.full_pass() == 0
    assert len(sched.queue) == 8


def test_decent_worker_table_defaults() -> None:
    assert DECENT.cpus == 32
    assert DEFAULT_TABLE.row((T.PRE_COMMIT_2, P32G)).gpu_utilization == 1.0


# --- assigners ------------------------------------------------------------------------------


def _batch_placements(assigner: str, concurrent: bool, pool: bool) -> list[str]:
    """Eight AddPiece on two idle identical workers: all submitted at once (concurrent) or each
    ending before the next arrives; candidates as a small pool (alloc selector) or anywhere."""
    rec = Recorder()
    sched = Scheduler(rec, assigner=assigner)
    add_worker(sched, "a")
    add_worker(sched, "b")
    candidates = Candidates(pool=frozenset({"a", "b"})) if pool else Candidates(anywhere=True)
    for number in range(8):
        req = request(T.ADD_PIECE, P2K, number=number, candidates=candidates)
        assert sched.submit(req)
        if not concurrent:
            sched.release(req.id)
    return [w.id for _, w in rec.placed]


@pytest.mark.parametrize("pool", [True, False])
def test_spread_alternates_even_when_each_task_ends_first(pool: bool) -> None:
    assert _batch_placements("spread", concurrent=False, pool=pool) == ["a", "b"] * 4
    assert _batch_placements("spread", concurrent=True, pool=pool) == ["a", "b"] * 4


@pytest.mark.parametrize("pool", [True, False])
def test_utilization_takes_the_least_loaded(pool: bool) -> None:
    # Sequential: both idle at each arrival, the tie goes to the same (first) worker every time.
    assert _batch_placements("utilization", concurrent=False, pool=pool) == ["a"] * 8
    # Concurrent: each placement loads its worker, so the other one is the least loaded next.
    assert _batch_placements("utilization", concurrent=True, pool=pool) == ["a", "b"] * 4


def test_spread_only_among_fitting_workers_and_preferred_first() -> None:
    rec = Recorder()
    sched = Scheduler(rec, assigner="spread")
    add_worker(sched, "a")
    add_worker(sched, "b", task_types={T.PRE_COMMIT_1})
    add_worker(sched, "c")
    for number in range(4):
        assert sched.submit(request(T.ADD_PIECE, P2K, number=number))
    assert [w.id for _, w in rec.placed] == ["a", "c", "a", "c"]
    # A holder of the sector's files still wins over a less recently used worker.
    assert sched.submit(request(T.ADD_PIECE, P2K, candidates=Candidates(preferred=("c",), anywhere=True)))
    assert rec.placed[-1][1].id == "c"


def test_unknown_assigner_is_refused() -> None:
    with pytest.raises(ValueError, match="utilization, spread"):
        Scheduler(Recorder(), assigner="random")


def test_post_never_waits_for_sealing_resources() -> None:
    """A worker whose CPUs are all held by PC1s, with more PC1s queued, still takes a Window and
    a Winning PoSt at once; PoSt counts only against other PoSt work, sealing sees its use."""
    rec = Recorder()
    sched = Scheduler(rec)
    add_worker(sched, "w", hardware=Hardware(mem_physical=8 * GiB, mem_swap=0, mem_reserved=0, cpus=2))
    for number in range(5):
        sched.submit(request(T.PRE_COMMIT_1, P2K, number=number))
    assert rec.names() == ["PC1@w", "PC1@w"] and len(sched.queue) == 3
    assert sched.submit(request(T.GENERATE_WINDOW_POST, P2K))
    assert sched.submit(request(T.GENERATE_WINNING_POST, P2K))
    # Two PoSt threads on two CPUs: a third PoSt waits for one of them, not for the PC1s.
    third = request(T.GENERATE_WINDOW_POST, P2K)
    assert not sched.submit(third)
    post = next(r for r, _ in rec.placed if r.shape[0] is T.GENERATE_WINDOW_POST)
    sched.release(post.id)
    assert third.id in sched.assigned
    assert sched.queue.ordered()[0].shape[0] is T.PRE_COMMIT_1 and len(sched.queue) == 3
