"""The history page: task runs (TaskHistory) with the filters of its query string, failures
first, and a chart of tasks per hour per type with p50/p95 run times per type over the last day
(rendered as inline SVG by the template from the numbers computed here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.vocabulary import TASK_SPECS
from services.web.model import TaskRun
from services.web.views.format import clock, duration
from services.web.views.sectors import href

# Outcomes that are not a failure.
FINE = ("succeeded", "running")
# One colour per task type (the legend and the bars use the same).
COLOURS = {
    "AP": "#4e79a7",
    "PC1": "#f28e2b",
    "PC2": "#e15759",
    "C1": "#76b7b2",
    "C2": "#59a14f",
    "FIN": "#edc948",
    "GET": "#b07aa1",
    "UNS": "#ff9da7",
    "WDP": "#9c755f",
    "WNP": "#bab0ac",
}
TASK_ORDER = [spec.short for _, spec in sorted(TASK_SPECS.items(), key=lambda kv: -kv[1].order)]
HOURS = 24
CHART_HEIGHT = 120.0
BAR_WIDTH = 30.0


@dataclass(frozen=True)
class RunRow:
    call_id: str
    sector: str
    sector_href: str
    task: str
    attempt: int
    worker: str
    queued: str
    took: str
    outcome: str
    failed: bool
    error: str


@dataclass(frozen=True)
class Segment:
    task: str
    colour: str
    x: float
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class HourColumn:
    label: str
    x: float
    total: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Percentiles:
    task: str
    colour: str
    runs: int
    p50: str
    p95: str
    # Bar widths (0..300) on a scale shared by every type.
    p50_width: float
    p95_width: float


@dataclass(frozen=True)
class Chart:
    columns: tuple[HourColumn, ...]
    peak: int
    legend: tuple[tuple[str, str], ...]
    percentiles: tuple[Percentiles, ...]
    width: float


@dataclass(frozen=True)
class HistoryPage:
    failures: tuple[RunRow, ...]
    runs: tuple[RunRow, ...]
    truncated: bool
    chart: Chart | None
    # The chart counts only the newest runs the page read (clients.HISTORY_LIMIT).
    chart_truncated: bool


def row(r: TaskRun) -> RunRow:
    end = r.finished_at
    took = duration(end - r.started_at) if end is not None and r.started_at is not None else "-"
    return RunRow(
        call_id=r.call_id,
        sector=str(r.sector),
        sector_href=href(r.sector.miner, r.sector.number),
        task=r.task,
        attempt=r.attempt,
        worker=r.hostname or r.worker_id[:8] or "-",
        queued=clock(r.queued_at),
        took=took,
        outcome=r.outcome,
        failed=r.outcome not in FINE,
        error=(f"{r.error_code}: " if r.error_code else "") + r.error,
    )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values` (non-empty)."""
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def chart(runs: Sequence[TaskRun], now: float) -> Chart | None:
    """Tasks per hour per type (by start time) over the last HOURS hours, and p50/p95 run times
    per type of the finished runs among them."""
    start = (math.floor(now / 3600) - (HOURS - 1)) * 3600
    counts: list[dict[str, int]] = [{} for _ in range(HOURS)]
    durations: dict[str, list[float]] = {}
    for r in runs:
        if r.started_at is None or r.started_at < start:
            continue
        slot = min(int((r.started_at - start) // 3600), HOURS - 1)
        counts[slot][r.task] = counts[slot].get(r.task, 0) + 1
        if r.finished_at is not None and r.outcome == "succeeded":
            durations.setdefault(r.task, []).append(r.finished_at - r.started_at)
    peak = max((sum(c.values()) for c in counts), default=0)
    if peak == 0:
        return None
    columns = []
    for i, c in enumerate(counts):
        x = i * (BAR_WIDTH + 4) + 40
        y = CHART_HEIGHT
        segments = []
        for task in TASK_ORDER:
            n = c.get(task, 0)
            if not n:
                continue
            height = n / peak * CHART_HEIGHT
            y -= height
            segments.append(Segment(task, COLOURS.get(task, "#888"), x, round(y, 1), round(height, 1), n))
        label = clock(start + i * 3600)[11:13]
        columns.append(HourColumn(label, x, sum(c.values()), tuple(segments)))
    used = [t for t in TASK_ORDER if any(t in c for c in counts)]
    longest = max((max(v) for v in durations.values()), default=0.0)
    pct = []
    for task in used:
        values = sorted(durations.get(task, []))
        if not values:
            continue
        p50, p95 = percentile(values, 50), percentile(values, 95)
        scale = 300 / longest if longest > 0 else 0
        pct.append(
            Percentiles(
                task,
                COLOURS.get(task, "#888"),
                len(values),
                duration(p50),
                duration(p95),
                round(max(p50 * scale, 1), 1),
                round(max(p95 * scale, 1), 1),
            )
        )
    return Chart(
        tuple(columns),
        peak,
        tuple((t, COLOURS.get(t, "#888")) for t in used),
        tuple(pct),
        HOURS * (BAR_WIDTH + 4) + 40,
    )


def build(
    runs: Sequence[TaskRun],
    truncated: bool,
    chart_runs: Sequence[TaskRun] | None,
    now: float,
    chart_truncated: bool = False,
) -> HistoryPage:
    rows = [row(r) for r in runs]
    return HistoryPage(
        failures=tuple(r for r in rows if r.failed),
        runs=tuple(rows),
        truncated=truncated,
        chart=chart(chart_runs, now) if chart_runs is not None else None,
        chart_truncated=chart_truncated,
    )
