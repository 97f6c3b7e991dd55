"""The worker's PC1 gathering (services/worker/pc1_batch.py) as a pure domain: calls of one key
batched up to the size or the window, other keys never mixed, a stopped member leaving the group
or leaving the running batch (which goes on with the rest), a failed batch rerun one by one. A
stand-in RunBatch records what ran; two tests run the real rust_core batch through it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

import rust_core
from services.common.vocabulary import TaskType
from services.worker.pc1_batch import Pc1Batcher, Pc1Job, capacity_warnings
from services.worker.sealer import Piece

T = TypeVar("T")
KEY_2K = (2048, 5)
KEY_8M = (8 << 20, 6)


def job(number: int) -> Pc1Job:
    return Pc1Job(f"call:{number}", Path(f"/c/{number}"), Path(f"/u/{number}"), b"p" * 32, number, b"t" * 32, [])


@dataclass
class FakeRun:
    """A RunBatch that records each call (sector numbers), blocks while `hold` is clear (giving
    up when its token is cancelled, and letting a job whose stop token is cancelled out, as
    rust_core does) and fails for the numbers in `bad`."""

    hold: threading.Event = field(default_factory=threading.Event)
    bad: set[int] = field(default_factory=set)
    calls: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    ended: list[tuple[tuple[int, ...], str, float]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    # (sector number, when) of each job let out of a running call.
    let_out: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hold.set()

    def __call__(
        self,
        size: int,
        jobs: list[Pc1Job],
        cancel: rust_core.CancelToken,
        lanes: list[rust_core.CancelToken],
        on_stopped: Callable[[int], None],
    ) -> list[bytes | None]:
        numbers = tuple(j.number for j in jobs)
        self.calls.append((size, numbers))
        self.started.set()
        out: set[int] = set()
        while not self.hold.wait(0.01):
            if cancel.cancelled:
                self.ended.append((numbers, "cancelled", time.monotonic()))
                raise rust_core.Cancelled("cancelled")
            for i, lane in enumerate(lanes):
                if lane.cancelled and i not in out:
                    out.add(i)
                    self.let_out.append((numbers[i], time.monotonic()))
                    on_stopped(i)
        bad = [n for n in numbers if n in self.bad]
        if bad:
            self.ended.append((numbers, "failed", time.monotonic()))
            raise ValueError(f"sectors[{numbers.index(bad[0])}] (sector number {bad[0]}): bad pieces")
        self.ended.append((numbers, "done", time.monotonic()))
        return [None if i in out else f"blob-{n}".encode() for i, n in enumerate(numbers)]


def run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(coro(), 30))


def test_calls_of_one_key_run_as_one_batch_and_each_gets_its_blob() -> None:
    fake = FakeRun()
    b = Pc1Batcher(2, wait_s=60, run_fn=fake)

    async def main() -> list[bytes]:
        return list(await asyncio.gather(b.run(KEY_2K, job(1)), b.run(KEY_2K, job(2))))

    start = time.monotonic()
    assert run(main) == [b"blob-1", b"blob-2"]
    assert time.monotonic() - start < 5, "a full batch must not wait for the window"
    assert fake.calls == [(2048, (1, 2))]
    assert [(r.calls, r.outcome) for r in b.history] == [(("call:1", "call:2"), "done")]


def test_a_lone_call_runs_when_the_window_ends() -> None:
    fake = FakeRun()
    b = Pc1Batcher(3, wait_s=0.3, run_fn=fake)

    async def main() -> tuple[bytes, float]:
        start = time.monotonic()
        out = await b.run(KEY_2K, job(7))
        return out, time.monotonic() - start

    out, took = run(main)
    assert out == b"blob-7" and took >= 0.29
    assert fake.calls == [(2048, (7,))]


def test_more_calls_than_the_size_make_several_batches_and_keys_never_mix() -> None:
    fake = FakeRun()
    b = Pc1Batcher(2, wait_s=0.2, run_fn=fake)

    async def main() -> list[bytes]:
        return list(
            await asyncio.gather(
                b.run(KEY_2K, job(1)),
                b.run(KEY_8M, job(2)),
                b.run((2048, 99), job(3)),  # same size, another proof type
                b.run(KEY_2K, job(4)),
                b.run(KEY_2K, job(5)),
            )
        )

    assert run(main) == [b"blob-1", b"blob-2", b"blob-3", b"blob-4", b"blob-5"]
    assert sorted(fake.calls) == sorted([(2048, (1, 4)), (8 << 20, (2,)), (2048, (3,)), (2048, (5,))])


def test_a_call_stopped_while_waiting_leaves_the_group() -> None:
    fake = FakeRun()
    b = Pc1Batcher(2, wait_s=0.3, run_fn=fake)

    async def main() -> bytes:
        first = asyncio.create_task(b.run(KEY_2K, job(1)))
        await asyncio.sleep(0.05)
        assert b.waiting(KEY_2K) == 1
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert b.waiting(KEY_2K) == 0
        return await b.run(KEY_2K, job(2))

    assert run(main) == b"blob-2"
    assert fake.calls == [(2048, (2,))]


@pytest.mark.parametrize("size", [2, 3])
def test_a_call_stopped_in_a_running_batch_ends_once_it_is_out_and_the_batch_goes_on(size: int) -> None:
    fake = FakeRun()
    fake.hold.clear()
    b = Pc1Batcher(size, wait_s=60, run_fn=fake)
    returned: list[float] = []

    async def main() -> tuple[list[Any], float]:
        tasks = [asyncio.create_task(b.run(KEY_2K, job(n), returned.append)) for n in range(1, size + 1)]
        await asyncio.to_thread(fake.started.wait, 10)
        tasks[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        stopped_at = time.monotonic()
        # The batch is still running without it.
        assert not fake.ended
        fake.hold.set()
        return await asyncio.gather(*tasks[1:]), stopped_at

    outs, stopped_at = run(main)
    assert outs == [f"blob-{n}".encode() for n in range(2, size + 1)]
    everyone = tuple(range(1, size + 1))
    # One call, never restarted; the stopped call was let out before it reported its stop.
    assert fake.calls == [(2048, everyone)]
    assert len(fake.let_out) == 1 and fake.let_out[0][0] == 1 and fake.let_out[0][1] <= stopped_at
    assert len(returned) == 1 and returned[0] < 1.0
    assert [(r.outcome, r.stopped) for r in b.history] == [("done", ("call:1",))]


def test_a_call_stopped_as_its_batch_ends_waits_for_the_end_instead() -> None:
    """The call finishes before it sees the stop token (the stop came too late): the stopped
    call still waits until nothing runs for it, then reports its stop."""

    def finishes_without_looking(
        size: int,
        jobs: list[Pc1Job],
        cancel: rust_core.CancelToken,
        lanes: list[rust_core.CancelToken],
        on_stopped: Callable[[int], None],
    ) -> list[bytes | None]:
        while not lanes[0].cancelled:
            time.sleep(0.01)
        time.sleep(0.2)
        return [f"blob-{j.number}".encode() for j in jobs]

    b = Pc1Batcher(2, wait_s=60, run_fn=finishes_without_looking)

    async def main() -> tuple[float, Any]:
        tasks = [asyncio.create_task(b.run(KEY_2K, job(n))) for n in (1, 2)]
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        tasks[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        return time.monotonic() - t0, await tasks[1]

    waited, other = run(main)
    assert waited >= 0.15 and other == b"blob-2"


def test_every_call_of_a_batch_stopped_runs_nothing_more() -> None:
    fake = FakeRun()
    fake.hold.clear()
    b = Pc1Batcher(2, wait_s=60, run_fn=fake)

    async def main() -> None:
        tasks = [asyncio.create_task(b.run(KEY_2K, job(n))) for n in (1, 2)]
        await asyncio.to_thread(fake.started.wait, 10)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with pytest.raises(asyncio.CancelledError):
                await t
        await asyncio.sleep(0.1)

    run(main)
    assert fake.calls == [(2048, (1, 2))]
    assert [e[1] for e in fake.ended] == ["cancelled"]


def test_a_failed_batch_reruns_each_call_alone_so_only_the_bad_one_fails() -> None:
    fake = FakeRun(bad={2})
    b = Pc1Batcher(3, wait_s=60, run_fn=fake)

    async def main() -> list[Any]:
        return await asyncio.gather(*(b.run(KEY_2K, job(n)) for n in (1, 2, 3)), return_exceptions=True)

    outs = run(main)
    assert outs[0] == b"blob-1" and outs[2] == b"blob-3"
    assert isinstance(outs[1], ValueError) and "sector number 2" in str(outs[1])
    assert fake.calls == [(2048, (1, 2, 3)), (2048, (1,)), (2048, (2,)), (2048, (3,))]


def test_capacity_warnings_name_what_keeps_a_batch_from_filling() -> None:
    pc1 = int(TaskType.PRE_COMMIT_1)
    assert capacity_warnings(2, 0, {}) == []
    assert capacity_warnings(2, 4, {(pc1, 0): 2, (int(TaskType.PRE_COMMIT_2), 0): 1}) == []
    got = capacity_warnings(3, 2, {(pc1, 0): 1, (pc1, 5): 2})
    assert len(got) == 3
    assert "max_tasks = 2" in got[0] and "every size is 1" in got[1] and "seal proof 5 is 2" in got[2]


@pytest.mark.parametrize("size", [2, 8])
def test_the_real_batch_through_the_batcher_equals_single_calls(tmp_path: Path, size: int) -> None:
    # 8: the largest pc1_batch_size, the 8-lane AVX-512VL labeling where the CPU has it.
    from tests.unit.rust_core.porep_helpers import PROVER, TICKET, make_unsealed

    jobs = []
    for n in range(1, size + 1):
        padded, pieces = make_unsealed(2048, [2048], rng_seed=n)
        (tmp_path / f"u{n}").write_bytes(padded)
        (tmp_path / f"c{n}").mkdir()
        jobs.append(
            Pc1Job(f"call:{n}", tmp_path / f"c{n}", tmp_path / f"u{n}", PROVER, n, TICKET, [Piece(*p) for p in pieces])
        )
    b = Pc1Batcher(size, wait_s=60)

    async def main() -> list[bytes]:
        return await asyncio.gather(*(b.run(KEY_2K, j) for j in jobs))

    outs = run(main)
    assert [r.outcome for r in b.history] == ["done"] and len(b.history[0].calls) == size
    for j, out in zip(jobs, outs, strict=True):
        single = tmp_path / f"single{j.number}"
        want = rust_core.seal_pre_commit_phase1(
            2048, str(single), str(j.unsealed), PROVER, j.number, TICKET, [p.as_tuple() for p in j.pieces]
        )
        assert out == want
        assert {p.name: p.read_bytes() for p in j.cache.iterdir()} == {p.name: p.read_bytes() for p in single.iterdir()}


def test_config_defaults_to_no_batching_and_takes_the_environment() -> None:
    from services.common.config import ConfigError, load_config
    from services.worker.config import WorkerConfig

    config = load_config(WorkerConfig, env={})
    assert (config.worker.pc1_batch_size, config.worker.pc1_batch_wait_ms) == (1, 5000)
    env = {"SECTORSTORAGE_WORKER_PC1_BATCH_SIZE": "3", "SECTORSTORAGE_WORKER_PC1_BATCH_WAIT_MS": "250"}
    config = load_config(WorkerConfig, env=env)
    assert (config.worker.pc1_batch_size, config.worker.pc1_batch_wait_ms) == (3, 250)
    config = load_config(WorkerConfig, env={"SECTORSTORAGE_WORKER_PC1_BATCH_SIZE": "8"})
    assert config.worker.pc1_batch_size == 8
    for bad in ("0", "9"):
        with pytest.raises(ConfigError, match="worker.pc1_batch_size"):
            load_config(WorkerConfig, env={"SECTORSTORAGE_WORKER_PC1_BATCH_SIZE": bad})


def test_real_batches_with_calls_stopped_at_random_moments(tmp_path: Path) -> None:
    """The batcher on the real rust_core (4 × 8 MiB), 1-2 calls cancelled at random moments of
    each round (before the batch starts, during a tree_d, while labeling, as it ends): a stopped
    call raises only once its cache holds no file, the others get exactly the single-sector
    blob and files, and the rust_core call is never restarted."""
    import random

    from tests.unit.rust_core.porep_helpers import PROVER, TICKET, make_unsealed

    size = 8 << 20
    rng = random.Random(20)
    inputs = []
    for n in range(1, 5):
        padded, pieces = make_unsealed(size, [size], rng_seed=n)
        (tmp_path / f"u{n}").write_bytes(padded)
        single = tmp_path / f"single{n}"
        blob = rust_core.seal_pre_commit_phase1(size, str(single), str(tmp_path / f"u{n}"), PROVER, n, TICKET, pieces)
        files = {p.name: p.read_bytes() for p in single.iterdir()}
        inputs.append((n, [Piece(*p) for p in pieces], blob, files))

    def real_files(d: Path) -> list[str]:
        return [p.name for p in d.iterdir() if not p.name.startswith(rust_core.TRASH_PREFIX)] if d.exists() else []

    left_running = 0
    for round_ in range(4):
        jobs = []
        for n, pieces, _, _ in inputs:
            cache = tmp_path / f"r{round_}-c{n}"
            cache.mkdir()
            jobs.append(Pc1Job(f"call:{n}", cache, tmp_path / f"u{n}", PROVER, n, TICKET, pieces))
        b = Pc1Batcher(4, wait_s=60)
        victims = rng.sample(range(4), rng.choice([1, 2]))
        delays = {v: rng.uniform(0, 1.5) for v in victims}
        left_files: dict[int, list[str]] = {}

        async def main(jobs: list[Pc1Job] = jobs, delays: dict[int, float] = delays) -> list[Any]:
            tasks = [asyncio.create_task(b.run(KEY_8M, j)) for j in jobs]

            async def stop(k: int, after: float) -> None:
                await asyncio.sleep(after)
                tasks[k].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tasks[k]
                # What its cache holds the moment the stopped call has returned.
                left_files[k] = real_files(jobs[k].cache)

            await asyncio.gather(*(stop(k, t) for k, t in delays.items()))
            return await asyncio.gather(*tasks, return_exceptions=True)

        outs = run(main)
        assert len(b.history) == 1, f"round {round_}: {b.history}"
        left_running += len(b.history[0].stopped)
        for k, (out, (_, _, blob, files)) in enumerate(zip(outs, inputs, strict=True)):
            if isinstance(out, asyncio.CancelledError):
                assert k in victims
                assert left_files[k] == [], f"round {round_}: stopped call {k} returned with {left_files[k]}"
            else:
                # Not stopped, or stopped too late to matter: the single call's blob and files.
                assert out == blob, f"round {round_}: call {k}"
                assert {p.name: p.read_bytes() for p in jobs[k].cache.iterdir()} == files
        assert rust_core.wait_trash(30)
    # The moments must include stops of calls inside a running batch (the lane path).
    assert left_running >= 2, left_running
