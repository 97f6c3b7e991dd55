"""The durable call tracker against SQLite files and PostgreSQL: states, WorkID dedup, first outcome wins,
retries with a limit, abort, late results, and recovery after a restart (reference behaviours
7, 8 and 10)."""

from __future__ import annotations

import asyncio

import pytest

from services.common.db import Database
from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager.calltracker import CallTracker, Outcome, RetryPolicy, ReturnStatus, SectorRefKey
from services.manager.records import CallStatus, WorkStatus, work_id_for
from tests.unit.manager.db import databases, db_url, open_store  # noqa: F401 - fixtures

SECTOR = SectorRefKey(miner=1000, number=7, seal_proof=5)
PC1 = "SealPreCommit1"


def make_tracker(db_url: str, databases: list[Database], policy: RetryPolicy | None = None) -> CallTracker:
    """A tracker on the database (a fresh process's view of it; a second one on the same URL is
    the manager after a restart)."""
    store = open_store(db_url, databases)
    return CallTracker(store, policy or RetryPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02))


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_work_id_is_method_plus_hash() -> None:
    a = work_id_for(PC1, b"params")
    assert a.startswith("SealPreCommit1:") and len(a.split(":")[1]) == 64
    assert a == work_id_for(PC1, b"params")
    assert a != work_id_for("SealPreCommit2", b"params")
    assert a != work_id_for(PC1, b"params2")


def test_same_work_is_attached_not_started_twice(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        first, created = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        again, created_again = await tracker.open(PC1, 2, SECTOR, b"p", 5)
        other, created_other = await tracker.open(PC1, 2, SECTOR, b"q", 0)
        assert created and not created_again and created_other
        assert again is first and other is not first
        # Both callers get the one result; the work is then forgotten.
        waiters = [asyncio.create_task(tracker.wait(first, 5)), asyncio.create_task(tracker.wait(again, 5))]
        await asyncio.sleep(0)
        assert await tracker.mark_dispatching(first, "w1", "host1", "s1", (), 1)
        await tracker.mark_running(first, first.call.call_id)
        decision = await tracker.complete(first.call.call_id, PC1, Outcome.success(b"p1out"))
        assert decision.status is ReturnStatus.STORED
        results = await asyncio.gather(*waiters)
        assert [r.result for r in results] == [b"p1out", b"p1out"]
        assert first.work_id not in tracker.works
        # The next identical request runs again.
        rerun, created = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        assert created and rerun.call.call_id != first.call.call_id

    run(main())


def test_redelivery_window_answers_a_lost_reply_again_even_after_a_restart(
    db_url: str, databases: list[Database]
) -> None:
    """With redelivery_window_s, a delivered result answers the identical request again (a
    client whose reply was lost, e.g. to a manager crash right after delivery, sends it again)
    instead of running the task twice; also on a restarted tracker; then the window closes and
    the request runs again. Errors are never redelivered."""

    async def main() -> None:
        now = [1000.0]
        policy = RetryPolicy(max_attempts=1, backoff_initial_s=0.01, backoff_max_s=0.02, redelivery_window_s=60)
        tracker = make_tracker(db_url, databases, policy)
        tracker.clock = lambda: now[0]
        first, created = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        assert created
        assert await tracker.mark_dispatching(first, "w1", "h", "s", (), 1)
        await tracker.complete(first.call.call_id, PC1, Outcome.success(b"out"))
        assert (await tracker.wait(first, 1)).result == b"out"
        again, created = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        assert not created and (await tracker.wait(again, 1)).result == b"out"

        restarted = make_tracker(db_url, databases, policy)
        restarted.clock = lambda: now[0] + 30
        await restarted.recover()
        assert not restarted.works  # nothing live: the work was delivered
        after, created = await restarted.open(PC1, 2, SECTOR, b"p", 0)
        assert not created and (await restarted.wait(after, 1)).result == b"out"

        restarted.clock = lambda: now[0] + 61
        rerun, created = await restarted.open(PC1, 2, SECTOR, b"p", 0)
        assert created and rerun.call.call_id != first.call.call_id

        # A final error is delivered once; the identical request runs again.
        bad, _ = await restarted.open(PC1, 2, SECTOR, b"e", 0)
        assert await restarted.mark_dispatching(bad, "w1", "h", "s", (), 1)
        await restarted.fail_call(bad, bad.call.call_id, CallStatus.FAILED, ErrorCode.PERMANENT, "no")
        assert not (await restarted.wait(bad, 1)).ok
        _, created = await restarted.open(PC1, 2, SECTOR, b"e", 0)
        assert created

    run(main())


def test_first_outcome_wins_and_wrong_method(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        live, _ = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        call_id = live.call.call_id
        await tracker.mark_dispatching(live, "w1", "h", "s", (), 1)
        assert (
            await tracker.complete(call_id, "SealCommit1", Outcome.success(b"x"))
        ).status is ReturnStatus.WRONG_METHOD
        assert (await tracker.complete(call_id, PC1, Outcome.success(b"one"))).status is ReturnStatus.STORED
        assert (await tracker.complete(call_id, PC1, Outcome.success(b"two"))).status is ReturnStatus.DUPLICATE
        assert (
            await tracker.complete("00000000-0000-0000-0000-000000000000", PC1, Outcome.success(b"x"))
        ).status is ReturnStatus.NOT_FOUND
        assert (await tracker.wait(live, 1)).result == b"one"
        # A repeated Return after delivery is still a harmless duplicate.
        assert (await tracker.complete(call_id, PC1, Outcome.success(b"one"))).status is ReturnStatus.DUPLICATE

    run(main())


def test_temporary_errors_retry_with_new_calls_up_to_the_limit(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        live, _ = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        seen = []
        for attempt in (1, 2, 3):
            assert live.record.attempt == attempt
            call_id = live.call.call_id
            seen.append(call_id)
            await tracker.mark_dispatching(live, "w1", "h", "s", (), 1)
            decision = await tracker.complete(call_id, PC1, Outcome.failure(ErrorCode.TEMPORARY, f"flaky {attempt}"))
            assert decision.retry is (attempt < 3)
        assert len(set(seen)) == 3
        outcome = await tracker.wait(live, 1)
        assert outcome.error_code is ErrorCode.TEMPORARY and outcome.error_message == "flaky 3"
        calls = await tracker.store.calls_of_work(live.work_id)  # type: ignore[attr-defined]
        assert [c.status for c in calls] == [CallStatus.FAILED] * 3

    run(main())


def test_retry_budget_and_back_off_per_task_type(db_url: str, databases: list[Database]) -> None:
    """PC1 (task type 2) gets 2 runs and a long back-off, C2 (5) keeps the default of 4."""

    async def main() -> None:
        policy = RetryPolicy(max_attempts=4, backoff_initial_s=0.01, backoff_max_s=0.02, per_type={2: (2, 30.0, 60.0)})
        tracker = make_tracker(db_url, databases, policy)
        for task_type, method, runs in ((2, PC1, 2), (5, "SealCommit2", 4)):
            live, _ = await tracker.open(method, task_type, SECTOR, b"p" + bytes([task_type]), 0)
            for attempt in range(1, runs + 1):
                await tracker.mark_dispatching(live, "w1", "h", "s", (), 1)
                before = tracker.clock()
                decision = await tracker.complete(
                    live.call.call_id, method, Outcome.failure(ErrorCode.TEMPORARY, "flaky")
                )
                assert decision.retry is (attempt < runs), (method, attempt)
                if decision.retry:
                    wait = live.record.not_before - before
                    assert (15.0 <= wait <= 30.5) if task_type == 2 else (wait <= 0.5), (method, wait)
                    live.record.not_before = 0.0
            assert (await tracker.wait(live, 1)).error_code is ErrorCode.TEMPORARY

    run(main())


def test_retry_config_per_task_type() -> None:
    from services.manager.config import ManagerSection
    from services.manager.tasks import TaskType

    section = ManagerSection(
        retry={"pc1": {"max_attempts": 2}, "C2": {"max_attempts": 8, "backoff_initial_s": 5}}, max_attempts=5
    )
    assert section.retry_of(TaskType.PRE_COMMIT_1) == (2, section.retry_backoff_initial_s, section.retry_backoff_max_s)
    assert section.retry_of(TaskType.COMMIT_2) == (8, 5.0, section.retry_backoff_max_s)
    assert section.retry_of(TaskType.ADD_PIECE) == (5, section.retry_backoff_initial_s, section.retry_backoff_max_s)
    with pytest.raises(ValueError, match="unknown task type|task type"):
        ManagerSection(retry={"PC9": {"max_attempts": 2}})


def test_permanent_error_is_not_retried(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        live, _ = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        decision = await tracker.fail_call(
            live, live.call.call_id, CallStatus.FAILED, ErrorCode.PERMANENT, "bad ticket"
        )
        assert not decision.retry
        assert (await tracker.wait(live, 1)).error_message == "bad ticket"

    run(main())


def test_abort_queued_and_running(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        queued, _ = await tracker.open(PC1, 2, SECTOR, b"a", 0)
        running, _ = await tracker.open(PC1, 2, SECTOR, b"b", 0)
        await tracker.mark_dispatching(running, "w1", "h", "s", (), 1)
        prev, _ = await tracker.abort(queued.call.call_id, "operator said so")  # type: ignore[misc]
        assert prev is CallStatus.QUEUED
        prev, _ = await tracker.abort(running.call.call_id, "")  # type: ignore[misc]
        assert prev is CallStatus.DISPATCHING
        assert await tracker.abort(running.call.call_id, "") is None
        outcome = await tracker.wait(queued, 1)
        assert outcome.error_code is ErrorCode.ABORTED and outcome.error_message == "operator said so"
        # The worker's own ABORTED return afterwards is a duplicate, not retried.
        late = await tracker.complete(running.call.call_id, PC1, Outcome.failure(ErrorCode.ABORTED, "stopped"))
        assert late.status is ReturnStatus.DUPLICATE
        # A dispatch that races with the abort does not happen.
        assert not await tracker.mark_dispatching(queued, "w1", "h", "s", (), 1)

    run(main())


def test_restart_recovers_running_work_and_keeps_results(db_url: str, databases: list[Database]) -> None:
    """Manager restart mid-task, both orders: the result returned before the caller comes back,
    and the caller coming back before the result (reference behaviour 7)."""

    async def before() -> tuple[str, str, str]:
        tracker = make_tracker(db_url, databases)
        a, _ = await tracker.open(PC1, 2, SECTOR, b"return-first", 0)
        b, _ = await tracker.open(PC1, 2, SECTOR, b"recall-first", 0)
        q, _ = await tracker.open(PC1, 2, SECTOR, b"never-dispatched", 0)
        for live in (a, b):
            await tracker.mark_dispatching(live, "w1", "h", "s1", (0,), 4)
            await tracker.mark_running(live, live.call.call_id)
        return a.call.call_id, b.call.call_id, q.call.call_id

    a_call, b_call, q_call = run(before())  # type: ignore[misc]

    async def after() -> None:
        tracker = make_tracker(db_url, databases)  # a fresh process on the same file
        recovered = {live.call.call_id: live for live in await tracker.recover()}
        assert set(recovered) == {a_call, b_call, q_call}
        assert recovered[a_call].record.status is WorkStatus.RUNNING
        assert recovered[a_call].call.status is CallStatus.RUNNING
        assert recovered[a_call].call.gpu_ordinals == (0,) and recovered[a_call].call.threads == 4
        assert recovered[q_call].record.status is WorkStatus.QUEUED
        # Order 1: the worker's Return lands first, the caller asks later and gets it.
        assert (await tracker.complete(a_call, PC1, Outcome.success(b"A"))).status is ReturnStatus.STORED
        again, created = await tracker.open(PC1, 2, SECTOR, b"return-first", 0)
        assert not created and (await tracker.wait(again, 1)).result == b"A"
        # Order 2: the caller re-issues first and waits; the Return lands afterwards.
        waiting, created = await tracker.open(PC1, 2, SECTOR, b"recall-first", 0)
        assert not created and waiting.call.call_id == b_call
        task = asyncio.create_task(tracker.wait(waiting, 5))
        await asyncio.sleep(0.01)
        assert (await tracker.complete(b_call, PC1, Outcome.success(b"B"))).status is ReturnStatus.STORED
        assert (await task).result == b"B"
        assert not tracker.running_on("w1")

    run(after())

    async def third() -> None:
        tracker = make_tracker(db_url, databases)
        left = await tracker.recover()
        assert [live.call.call_id for live in left] == [q_call]

    run(third())


def test_result_kept_across_restart_until_collected(db_url: str, databases: list[Database]) -> None:
    async def first() -> str:
        tracker = make_tracker(db_url, databases)
        live, _ = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        await tracker.mark_dispatching(live, "w", "h", "s", (), 1)
        await tracker.complete(live.call.call_id, PC1, Outcome.success(b"kept"))
        return live.work_id  # nobody collected it: the caller went away

    work_id = run(first())

    async def second() -> None:
        tracker = make_tracker(db_url, databases)
        await tracker.recover()
        assert tracker.works[work_id].record.status is WorkStatus.DONE  # type: ignore[index]
        live, created = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        assert not created
        assert (await tracker.wait(live, 1)).result == b"kept"

    run(second())


def test_late_result_of_requeued_call_is_used(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        live, _ = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        lost_call = live.call.call_id
        await tracker.mark_dispatching(live, "w1", "h", "s", (), 1)
        decision = await tracker.fail_call(
            live, lost_call, CallStatus.REQUEUED, ErrorCode.WORKER_RESTARTED, "worker gone"
        )
        assert decision.retry and live.call.call_id != lost_call
        late = await tracker.complete(lost_call, PC1, Outcome.success(b"late"))
        assert late.status is ReturnStatus.STORED and late.superseded is not None
        assert (await tracker.wait(live, 1)).result == b"late"
        statuses = {c.call_id: c.status for c in await tracker.store.calls_of_work(live.work_id)}  # type: ignore[attr-defined]
        assert statuses[lost_call] is CallStatus.SUCCEEDED
        assert CallStatus.CANCELLED in statuses.values()

    run(main())


def test_late_result_is_not_used_once_the_rerun_was_given_to_a_worker(db_url: str, databases: list[Database]) -> None:
    """The rerun may already have removed what the late call wrote (a PC1 starts by removing the
    sector's sealed file and cache everywhere), so its own result counts, not the late one."""

    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        live, _ = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        lost_call = live.call.call_id
        await tracker.mark_dispatching(live, "w1", "h", "s", (), 1)
        await tracker.fail_call(live, lost_call, CallStatus.REQUEUED, ErrorCode.WORKER_RESTARTED, "worker gone")
        rerun = live.call.call_id
        assert await tracker.mark_dispatching(live, "w2", "h2", "s2", (), 1)
        late = await tracker.complete(lost_call, PC1, Outcome.success(b"late"))
        assert late.status is ReturnStatus.DUPLICATE and late.superseded is None
        assert live.call.call_id == rerun and live.call.status is CallStatus.DISPATCHING
        await tracker.mark_running(live, rerun)
        assert (await tracker.complete(rerun, PC1, Outcome.success(b"rerun"))).status is ReturnStatus.STORED
        assert (await tracker.wait(live, 1)).result == b"rerun"

    run(main())


def test_non_dedup_work_never_retried(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        a, _ = await tracker.open("AddPiece", 1, SECTOR, b"h", 0, dedup=False)
        b, _ = await tracker.open("AddPiece", 1, SECTOR, b"h", 0, dedup=False)
        assert a is not b
        decision = await tracker.fail_call(a, a.call.call_id, CallStatus.FAILED, ErrorCode.TEMPORARY, "stream broke")
        assert not decision.retry

    run(main())


def test_caller_deadline_does_not_stop_work(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        tracker = make_tracker(db_url, databases)
        live, _ = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        with pytest.raises(TimeoutError):
            await tracker.wait(live, 0.01)
        assert live.work_id in tracker.works
        await tracker.mark_dispatching(live, "w", "h", "s", (), 1)
        await tracker.complete(live.call.call_id, PC1, Outcome.success(b"r"))
        again, created = await tracker.open(PC1, 2, SECTOR, b"p", 0)
        assert not created and (await tracker.wait(again, 1)).result == b"r"

    run(main())
