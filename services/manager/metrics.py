"""The manager's Prometheus metrics.

Counters and histograms are updated as things happen; the queue, job and worker gauges are read
from the live state when Prometheus scrapes (a custom collector), so a burst of 10,000 requests
costs no metric updates at all.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CALLS_DISPATCHED = Counter(
    "sectorstorage_manager_calls_dispatched_total", "Task calls dispatched to workers", ["task", "worker"]
)
CALLS_RETURNED = Counter(
    "sectorstorage_manager_calls_returned_total",
    "Task call outcomes recorded (succeeded, failed, aborted, timed_out, requeued, duplicate)",
    ["task", "outcome"],
)
CALL_SECONDS = Histogram(
    "sectorstorage_manager_call_duration_seconds",
    "Time from dispatch to the recorded outcome of a call",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200),
)
QUEUE_WAIT_SECONDS = Histogram(
    "sectorstorage_manager_queue_wait_seconds",
    "Time a call waited in the queue before it was placed",
    ["task"],
    buckets=(0.001, 0.01, 0.1, 1, 5, 10, 30, 60, 300, 900, 3600, 14400),
)
LEADER = Gauge("sectorstorage_manager_leader", "1 while this manager leads (holds the lease), 0 on a standby")
LEADER_EPOCH = Gauge(
    "sectorstorage_manager_leader_epoch", "The lease epoch this manager leads with (rises at every failover)"
)
LEADER_SINCE = Gauge("sectorstorage_manager_leader_since_seconds", "Unix time at which this manager took the lease")
FAILOVERS = Gauge(
    "sectorstorage_manager_failovers",
    "Changes of leader recorded in the database so far (as of this manager's election)",
)
WORKERS_LOST = Counter("sectorstorage_manager_workers_lost_total", "Workers marked gone after missing heartbeats")
DEDUP_ATTACHED = Counter(
    "sectorstorage_manager_work_attached_total",
    "Requests that attached to existing work (same work id) instead of starting it again",
    ["method"],
)


@dataclass
class Snapshot:
    """What the gauges show, built by the manager on each scrape."""

    queued: Tally[str] = field(default_factory=Tally)
    unsatisfiable: Tally[str] = field(default_factory=Tally)
    jobs: Tally[tuple[str, str]] = field(default_factory=Tally)
    workers: Tally[str] = field(default_factory=Tally)
    # worker id -> (hostname, mem_used_min, mem_used_max, cpu_used, gpu_used, tasks)
    worker_use: dict[str, tuple[str, int, int, int, float, int]] = field(default_factory=dict)
    placements: int = 0


class ManagerCollector(Collector):
    """Gauges from a snapshot function; registered once per process."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            snap = self._snapshot()
        except RuntimeError:  # the state changed under the scrape thread; next scrape
            return
        queued = GaugeMetricFamily(
            "sectorstorage_manager_queue_length", "Requests waiting for a worker", labels=["task"]
        )
        for task, n in sorted(snap.queued.items()):
            queued.add_metric([task], n)
        yield queued
        unsat = GaugeMetricFamily(
            "sectorstorage_manager_unsatisfiable_requests",
            "Queued requests no registered worker could ever run",
            labels=["task"],
        )
        for task, n in sorted(snap.unsatisfiable.items()):
            unsat.add_metric([task], n)
        yield unsat
        jobs = GaugeMetricFamily("sectorstorage_manager_jobs", "Jobs by state", labels=["task", "state"])
        for (task, state), n in sorted(snap.jobs.items()):
            jobs.add_metric([task, state], n)
        yield jobs
        workers = GaugeMetricFamily("sectorstorage_manager_workers", "Registered workers by state", labels=["state"])
        for state, n in sorted(snap.workers.items()):
            workers.add_metric([state], n)
        yield workers
        mem_min = GaugeMetricFamily(
            "sectorstorage_manager_worker_mem_used_min_bytes",
            "RAM held by running tasks",
            labels=["worker", "hostname"],
        )
        mem_max = GaugeMetricFamily(
            "sectorstorage_manager_worker_mem_used_max_bytes",
            "RAM+swap held by running tasks",
            labels=["worker", "hostname"],
        )
        cpu = GaugeMetricFamily(
            "sectorstorage_manager_worker_cpu_used", "CPU threads held by running tasks", labels=["worker", "hostname"]
        )
        gpu = GaugeMetricFamily(
            "sectorstorage_manager_worker_gpu_used",
            "GPUs in use by running tasks (sum of fractions)",
            labels=["worker", "hostname"],
        )
        tasks = GaugeMetricFamily(
            "sectorstorage_manager_worker_tasks", "Tasks placed on the worker", labels=["worker", "hostname"]
        )
        for wid, (host, used_min, used_max, cpu_used, gpu_used, n) in sorted(snap.worker_use.items()):
            mem_min.add_metric([wid, host], used_min)
            mem_max.add_metric([wid, host], used_max)
            cpu.add_metric([wid, host], cpu_used)
            gpu.add_metric([wid, host], gpu_used)
            tasks.add_metric([wid, host], n)
        yield from (mem_min, mem_max, cpu, gpu, tasks)
        placements = GaugeMetricFamily("sectorstorage_manager_placements", "Placement decisions since start")
        placements.add_metric([], snap.placements)
        yield placements


_registered: list[ManagerCollector] = []


def register_collector(snapshot: Callable[[], Snapshot]) -> None:
    """Registers (or re-points, in tests that build several managers) the gauge collector."""
    if _registered:
        _registered[0]._snapshot = snapshot
        return
    collector = ManagerCollector(snapshot)
    REGISTRY.register(collector)
    _registered.append(collector)
