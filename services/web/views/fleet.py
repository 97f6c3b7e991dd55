"""The fleet page: one card per worker with its state, CPU/RAM/VMEM/GPU bars against what running
tasks reserve (as `sectorctl sealing workers` computes them), its running tasks and their caps,
and how long ago it last sent a heartbeat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.web.model import Job, Worker, WorkerState
from services.web.views.format import Bar, age, duration, size

# Job states that mean "on the worker now".
ACTIVE_STATES = ("running", "preparing", "assigned", "ret-wait")


@dataclass(frozen=True)
class Badge:
    text: str
    # CSS class: good, warn, bad, neutral.
    kind: str


@dataclass(frozen=True)
class RunningTask:
    call_id: str
    task: str
    sector: str
    state: str
    elapsed: str


@dataclass(frozen=True)
class WorkerCard:
    worker_id: str
    title: str
    hostname: str
    address: str
    badges: tuple[Badge, ...]
    bars: tuple[Bar, ...]
    tasks: tuple[RunningTask, ...]
    caps: tuple[str, ...]
    counts: str
    task_types: str
    heartbeat: str


@dataclass(frozen=True)
class FleetPage:
    workers: tuple[WorkerCard, ...]
    summary: str


def state_badges(state: WorkerState) -> tuple[Badge, ...]:
    out = [Badge("connected", "good") if state.connected else Badge("disconnected", "bad")]
    if not state.enabled:
        out.append(Badge("disabled", "bad"))
    if state.draining:
        out.append(Badge("draining", "warn"))
    elif state.cordoned:
        out.append(Badge("cordoned", "warn"))
    return tuple(out)


def _bars(w: Worker) -> tuple[Bar, ...]:
    ram_used = w.mem_used_min + w.mem_reserved
    vmem_used = w.mem_used_max + w.mem_reserved
    vmem_total = w.mem_physical + w.mem_swap
    bars = [
        Bar("CPU", w.cpu_used, w.cpus, f"{w.cpu_used}/{w.cpus} threads"),
        Bar("RAM", ram_used, w.mem_physical, f"{size(ram_used)} / {size(w.mem_physical)}"),
        Bar("VMEM", vmem_used, vmem_total, f"{size(vmem_used)} / {size(vmem_total)}"),
    ]
    for g in w.gpus:
        bars.append(Bar(f"GPU {g.ordinal}", g.used, 1.0, f"{g.used * 100:.0f}% {g.name}"))
    return tuple(bars)


def _caps(w: Worker) -> tuple[str, ...]:
    out = []
    for c in w.caps:
        label = f"{c.task}({c.size})" if c.size else c.task
        out.append(f"{label} {c.running}/{c.cap if c.cap is not None else '∞'}")
    return tuple(out)


def build(workers: Sequence[Worker], jobs: Sequence[Job], now: float) -> FleetPage:
    by_worker: dict[str, list[Job]] = {}
    for j in jobs:
        if j.worker_id and j.state in ACTIVE_STATES:
            by_worker.setdefault(j.worker_id, []).append(j)
    cards = []
    for w in sorted(workers, key=lambda w: (w.name or w.hostname, w.worker_id)):
        tasks = tuple(
            RunningTask(
                call_id=j.call_id,
                task=j.task,
                sector=str(j.sector),
                state=j.state,
                elapsed=duration(now - j.started_at) if j.started_at else "-",
            )
            for j in sorted(by_worker.get(w.worker_id, []), key=lambda j: (j.started_at or now, j.call_id))
        )
        cards.append(
            WorkerCard(
                worker_id=w.worker_id,
                title=w.name or w.hostname or w.worker_id,
                hostname=w.hostname,
                address=w.address,
                badges=state_badges(w.state),
                bars=_bars(w),
                tasks=tasks,
                caps=_caps(w),
                counts=f"{w.tasks_running} running, {w.tasks_preparing} preparing, {w.tasks_assigned} assigned",
                task_types=" ".join(w.task_types) or "none",
                heartbeat=age(w.last_heartbeat, now),
            )
        )
    connected = sum(1 for w in workers if w.state.connected)
    running = sum(w.tasks_running for w in workers)
    summary = f"{len(workers)} worker(s), {connected} connected, {running} task(s) running"
    return FleetPage(tuple(cards), summary)
