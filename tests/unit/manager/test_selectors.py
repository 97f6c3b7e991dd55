"""Selectors against an in-memory index: task, existing (with and without fetch), alloc (with
holders first), no index, index outages, and their JSON form (stored with each work)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from services.common.errors import DeadlineExceeded, InvalidArgument, Unavailable
from services.manager.accounting import WaitReason
from services.manager.index_client import FileType, PathType, describe_index_failure, is_unavailable
from services.manager.selectors import (
    ANYWHERE,
    AllocSelector,
    Candidates,
    ExistingSelector,
    FixedSelector,
    SectorKey,
    SelectorContext,
    TaskSelector,
    selector_from_json,
    selector_to_json,
)
from services.manager.tasks import TaskType
from tests.support.fake_worker import FakeIndex

KEY = SectorKey(1000, 5, 2048)
SEALED_CACHE = frozenset({FileType.SEALED, FileType.CACHE})
UNSEALED = frozenset({FileType.UNSEALED})


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def context(index: FakeIndex | None, owners: dict[str, list[str]], able: set[str] | None = None) -> SelectorContext:
    ctx = SelectorContext(index=index, workers_of_path=lambda sid: owners.get(sid, []))
    if able is not None:
        ctx.can_run = lambda wid, tt: wid in able
    return ctx


def fleet() -> tuple[FakeIndex, dict[str, list[str]]]:
    index = FakeIndex()
    for name in ("a", "b", "c"):
        index.add_path(f"p-{name}", f"{name}:1")
    index.add_path("p-full", "d:1", room=0)
    index.add_path("p-store", "e:1", can_seal=False)
    owners = {"p-a": ["wa"], "p-b": ["wb"], "p-c": ["wc"], "p-full": ["wd"], "p-store": ["we"]}
    return index, owners


def test_task_selector_accepts_every_worker_of_the_type() -> None:
    assert run(TaskSelector().resolve(context(None, {}))) is ANYWHERE
    assert ANYWHERE.specialized_first and ANYWHERE.accepts("anyone")


def test_existing_without_fetch_only_holders_by_weight() -> None:
    index, owners = fleet()
    index.declare(1000, 5, SEALED_CACHE, "p-b")
    index.declare(1000, 5, {FileType.CACHE}, "p-a")
    cand = run(ExistingSelector(KEY, SEALED_CACHE, allow_fetch=False).resolve(context(index, owners)))
    assert cand.preferred == ("wb", "wa")  # p-b holds both types: twice the weight
    assert cand.pool is None and cand.reason is WaitReason.SECTOR_FILES_ELSEWHERE
    assert not cand.accepts("wc")


def test_existing_with_fetch_offers_fetchers_only_when_no_holder_can_run() -> None:
    index, owners = fleet()
    index.declare(1000, 5, SEALED_CACHE, "p-a")
    selector = ExistingSelector(KEY, SEALED_CACHE, allow_fetch=True, task_type=TaskType.PRE_COMMIT_2)
    waits = run(selector.resolve(context(index, owners, able={"wa", "wb", "wc"})))
    assert waits.preferred == ("wa",) and waits.pool is None
    fetches = run(selector.resolve(context(index, owners, able={"wb", "wc"})))
    assert fetches.preferred == ("wa",)
    assert fetches.pool == frozenset({"wb", "wc"})  # not the full path, not the store-only path
    # Without a task type (the reference's rule): fetchers always.
    plain = run(ExistingSelector(KEY, SEALED_CACHE, allow_fetch=True).resolve(context(index, owners)))
    assert plain.pool == frozenset({"wb", "wc"})


def test_existing_nobody_holds_it() -> None:
    index, owners = fleet()
    cand = run(ExistingSelector(KEY, SEALED_CACHE, allow_fetch=False).resolve(context(index, owners)))
    assert cand.empty and cand.reason is WaitReason.SECTOR_FILES_ELSEWHERE


def test_alloc_pool_and_holders_first() -> None:
    index, owners = fleet()
    index.declare(1000, 5, UNSEALED, "p-c")
    cand = run(
        AllocSelector(KEY, SEALED_CACHE, PathType.SEALING, prefer_holders_of=UNSEALED).resolve(context(index, owners))
    )
    assert cand.preferred == ("wc",)
    assert cand.pool == frozenset({"wa", "wb", "wc"}) and cand.reason is WaitReason.NO_STORAGE
    store = run(AllocSelector(KEY, SEALED_CACHE, PathType.STORAGE).resolve(context(index, owners)))
    assert store.pool == frozenset({"wa", "wb", "wc", "we"})  # the full path's worker is not in it


def test_alloc_nowhere_to_put_it() -> None:
    index = FakeIndex()
    index.add_path("p", "x:1", room=0)
    cand = run(AllocSelector(KEY, SEALED_CACHE, PathType.SEALING).resolve(context(index, {"p": ["w"]})))
    assert cand.empty and cand.reason is WaitReason.NO_STORAGE


def test_alloc_answers_are_shared_by_a_burst() -> None:
    index, owners = fleet()
    calls = 0
    original = index.best_alloc

    async def counting(*args: Any) -> list[str]:
        nonlocal calls
        calls += 1
        return await original(*args)

    index.best_alloc = counting  # type: ignore[method-assign]
    ctx = context(index, owners)
    for n in range(50):
        run(AllocSelector(SectorKey(1000, n, 2048), UNSEALED, PathType.SEALING).resolve(ctx))
    assert calls == 1


def test_no_index_accepts_any_worker() -> None:
    cand = run(ExistingSelector(KEY, SEALED_CACHE, allow_fetch=False).resolve(context(None, {})))
    assert cand.anywhere and not cand.specialized_first


def test_index_outage_places_nothing_that_needs_locality() -> None:
    """With the index down, neither C1/PC2 (existing files) nor AddPiece/PC1 (new files) accept
    any worker: they wait, and SchedDiag says the index is why."""

    class Down(FakeIndex):
        async def find_sector(self, *args: Any) -> Any:
            raise Unavailable("down")  # what the index client raises for UNAVAILABLE

        async def best_alloc(self, *args: Any) -> Any:
            raise Unavailable("down")  # what the index client raises for UNAVAILABLE

    for selector in (
        ExistingSelector(KEY, SEALED_CACHE, allow_fetch=False),
        ExistingSelector(KEY, SEALED_CACHE, allow_fetch=True),
        AllocSelector(KEY, UNSEALED, PathType.SEALING),
    ):
        cand = run(selector.resolve(context(Down(), {})))
        assert cand.empty and not cand.accepts("any-worker"), selector
        assert cand.reason is WaitReason.INDEX_UNAVAILABLE


def test_index_errors_that_are_bugs_propagate() -> None:
    class Broken(FakeIndex):
        async def find_sector(self, *args: Any) -> Any:
            raise InvalidArgument("bad")  # what the index client raises for INVALID_ARGUMENT

    with pytest.raises(InvalidArgument, match="bad"):
        run(ExistingSelector(KEY, SEALED_CACHE, allow_fetch=False).resolve(context(Broken(), {})))


@pytest.mark.parametrize(
    "selector",
    [
        TaskSelector(),
        FixedSelector(("w1", "w2")),
        ExistingSelector(KEY, SEALED_CACHE, True, TaskType.PRE_COMMIT_2),
        ExistingSelector(KEY, UNSEALED, False),
        AllocSelector(KEY, SEALED_CACHE, PathType.SEALING, UNSEALED),
    ],
)
def test_selectors_round_trip_through_json(selector: Any) -> None:
    assert selector_from_json(selector_to_json(selector)) == selector


def test_fixed_selector() -> None:
    cand = run(FixedSelector(("w1",)).resolve(context(None, {})))
    assert cand == Candidates(preferred=("w1",), reason=WaitReason.SECTOR_FILES_ELSEWHERE)


def test_the_index_client_s_errors_say_whether_to_wait_and_what_failed() -> None:
    assert is_unavailable(Unavailable("down")) and is_unavailable(DeadlineExceeded("slow"))
    assert not is_unavailable(InvalidArgument("bad")) and not is_unavailable(RuntimeError("bug"))
    message, extra = describe_index_failure("10.0.0.1:7000", Unavailable("connection refused"), "FindSector failed")
    assert message == "index 10.0.0.1:7000 unavailable (UNAVAILABLE): FindSector failed"
    assert extra["code"] == "UNAVAILABLE" and extra["error"] == "connection refused"
    message, _ = describe_index_failure("10.0.0.1:7000", InvalidArgument("bad"), "FindSector failed")
    assert message == "index 10.0.0.1:7000 answered (INVALID_ARGUMENT): FindSector failed"
    message, _ = describe_index_failure("", RuntimeError("boom"), "FindSector failed")
    assert message == "index (in process) unavailable: FindSector failed"
