"""The sectors list and one sector's page: its lifecycle state, its pieces, the steps done with
the time each took, a timeline of its task runs (from the task history), where each of its files
lives, and whether it is provable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.web.model import FileLocation, SectorStatus, TaskRun
from services.web.views.format import age, clock, duration, size

# Where the timeline's bars start and how wide the drawing is (SVG user units).
TIMELINE_LEFT = 150
TIMELINE_WIDTH = 800
ROW_HEIGHT = 22


@dataclass(frozen=True)
class SectorRow:
    sector: str
    href: str
    state: str
    proof: str
    generation: int
    pieces: int
    updated: str
    failed: bool


@dataclass(frozen=True)
class SectorsPage:
    rows: tuple[SectorRow, ...]
    by_state: tuple[tuple[str, int], ...]
    truncated: bool


def href(miner: int, number: int) -> str:
    return f"/sectors/{miner}/{number}"


def build_list(sectors: Sequence[SectorStatus], truncated: bool, now: float) -> SectorsPage:
    counts: dict[str, int] = {}
    rows = []
    for s in sectors:
        counts[s.state] = counts.get(s.state, 0) + 1
        rows.append(
            SectorRow(
                sector=str(s.sector),
                href=href(s.sector.miner, s.sector.number),
                state=s.state,
                proof=s.proof,
                generation=s.generation,
                pieces=len(s.pieces),
                updated=age(s.updated_at, now),
                failed=s.state == "failed",
            )
        )
    return SectorsPage(tuple(rows), tuple(sorted(counts.items())), truncated)


@dataclass(frozen=True)
class StepRow:
    step: str
    done_at: str
    took: str


@dataclass(frozen=True)
class TimelineBar:
    label: str
    outcome: str
    x: float
    width: float
    y: float
    took: str
    worker: str


@dataclass(frozen=True)
class Timeline:
    bars: tuple[TimelineBar, ...]
    height: float
    span: str
    start: str


@dataclass(frozen=True)
class LocationRow:
    storage_id: str
    types: str
    primary: bool
    roles: str
    urls: str


@dataclass(frozen=True)
class SectorPage:
    sector: str
    state: str
    proof: str
    generation: int
    created: str
    updated: str
    last_error: str
    pieces: tuple[tuple[str, str], ...]
    steps: tuple[StepRow, ...]
    timeline: Timeline | None
    locations: tuple[LocationRow, ...]
    # 'provable', 'not provable: why', or why it was not checked.
    provable: str
    provable_ok: bool | None
    jobs: tuple[tuple[str, str, str, str], ...]


def _steps(s: SectorStatus) -> tuple[StepRow, ...]:
    rows = []
    previous = s.created_at
    for step in s.steps:
        took = duration(step.done_at - previous) if step.done_at is not None and previous is not None else "-"
        rows.append(StepRow(step.step, clock(step.done_at), took))
        previous = step.done_at if step.done_at is not None else previous
    return tuple(rows)


def timeline(runs: Sequence[TaskRun], now: float) -> Timeline | None:
    """A bar per task run from its start to its end (now when still running), on one time axis,
    oldest at the top."""
    timed = [r for r in runs if r.started_at is not None]
    if not timed:
        return None
    timed.sort(key=lambda r: (r.started_at or 0.0, r.call_id))
    start = min(r.started_at or now for r in timed)
    end = max(r.finished_at or now for r in timed)
    span = max(end - start, 1e-3)
    bars = []
    for i, r in enumerate(timed):
        began = r.started_at or start
        finished = r.finished_at or now
        x = TIMELINE_LEFT + (began - start) / span * TIMELINE_WIDTH
        width = max((finished - began) / span * TIMELINE_WIDTH, 2.0)
        bars.append(
            TimelineBar(
                label=f"{r.task}" + (f" (try {r.attempt})" if r.attempt > 1 else ""),
                outcome=r.outcome,
                x=round(x, 1),
                width=round(width, 1),
                y=i * ROW_HEIGHT + 4,
                took=duration(finished - began),
                worker=r.hostname or r.worker_id[:8],
            )
        )
    return Timeline(tuple(bars), len(bars) * ROW_HEIGHT + 8, duration(span), clock(start))


def build_sector(
    s: SectorStatus,
    runs: Sequence[TaskRun] | None,
    locations: Sequence[FileLocation] | None,
    provable: tuple[bool | None, str],
    now: float,
) -> SectorPage:
    return SectorPage(
        sector=str(s.sector),
        state=s.state,
        proof=s.proof,
        generation=s.generation,
        created=clock(s.created_at),
        updated=f"{clock(s.updated_at)} ({age(s.updated_at, now)})",
        last_error=s.last_error,
        pieces=tuple((size(p.size), p.cid) for p in s.pieces),
        steps=_steps(s),
        timeline=timeline(runs, now) if runs is not None else None,
        locations=tuple(
            LocationRow(
                storage_id=loc.storage_id,
                types=", ".join(loc.types),
                primary=loc.primary,
                roles="/".join(r for r, on in (("seal", loc.can_seal), ("store", loc.can_store)) if on) or "none",
                urls=", ".join(loc.urls),
            )
            for loc in (locations or ())
        ),
        provable=provable[1],
        provable_ok=provable[0],
        jobs=tuple((j.call_id, j.task, j.state, j.hostname or j.worker_id[:8] or "-") for j in s.jobs),
    )
