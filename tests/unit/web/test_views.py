"""The dashboard's page data from plain values (no gRPC, no HTTP): bars and their levels, the
queue grouped by reason, the storage path's fullness, a sector's timeline, the history chart's
counts and percentiles, the query string checks and the login cookie."""

from __future__ import annotations

import base64

import pytest

from services.web import model
from services.web.login import FailedLogins, Gate
from services.web.views import fleet, history, params, queue, sectors, storage
from services.web.views.format import Bar, duration, size

NOW = 1_800_000_000.0
KEY = model.SectorKey(1000, 7)


def worker(worker_id: str, **state: bool) -> model.Worker:
    flags = {"enabled": True, "cordoned": False, "draining": False, "connected": True, **state}
    return model.Worker(
        worker_id=worker_id,
        name=f"name-{worker_id}",
        hostname="host",
        address="127.0.0.1:1",
        state=model.WorkerState(**flags),
        last_heartbeat=NOW - 2,
        cpus=8,
        cpu_used=6,
        mem_physical=16 << 30,
        mem_swap=0,
        mem_reserved=2 << 30,
        mem_used_min=12 << 30,
        mem_used_max=12 << 30,
        gpus=(model.Gpu(0, "GPU A", 0.5),),
        caps=(model.CapUsage("PC1", "", 2, 4), model.CapUsage("PC2", "32GiB", 0, None)),
        tasks_running=1,
        tasks_preparing=0,
        tasks_assigned=0,
        task_types=("AP", "PC1"),
        paths=(),
    )


def run(task: str, start: float, took: float | None, outcome: str = "succeeded") -> model.TaskRun:
    return model.TaskRun(
        call_id=f"c-{task}-{start}",
        sector=KEY,
        task=task,
        attempt=1,
        worker_id="w1",
        hostname="host",
        queued_at=start - 1,
        started_at=start,
        finished_at=None if took is None else start + took,
        outcome=outcome,
        error_code="aborted" if outcome == "aborted" else "",
        error="stop" if outcome == "aborted" else "",
    )


def test_bar_levels_and_sizes() -> None:
    assert Bar("x", 90, 100, "").level == "nearly-full" and Bar("x", 90, 100, "").percent == 90
    assert Bar("x", 80, 100, "").level == "busy"
    assert Bar("x", 100, 100, "").level == "full"
    assert Bar("x", 10, 100, "").level == "ok"
    assert Bar("x", 5, 0, "").level == "ok" and not Bar("x", 5, 0, "").known
    assert Bar("x", 500, 100, "").fraction == 1.0
    assert size(1536) == "1.5 KiB" and size(9 << 20) == "9 MiB"
    assert duration(0.25) == "250 ms" and duration(90) == "90.0 s" and duration(None) == "-"


def test_fleet_cards_show_state_bars_caps_and_running_tasks() -> None:
    jobs = [
        model.Job("c1", KEY, "PC1", "running", "w1", "host", NOW - 10, NOW - 4, 1),
        model.Job("c2", KEY, "AP", "queued", "", "", NOW - 1, None, 1),
    ]
    page = fleet.build([worker("w2", cordoned=True), worker("w1")], jobs, NOW)
    assert [c.worker_id for c in page.workers] == ["w1", "w2"]
    w1, w2 = page.workers
    assert [b.text for b in w2.badges] == ["connected", "cordoned"]
    assert [(t.task, t.sector, t.elapsed) for t in w1.tasks] == [("PC1", "1000/7", "4.0 s")]
    assert w2.tasks == ()
    bars = {b.label: b for b in w1.bars}
    assert bars["CPU"].percent == 75 and bars["RAM"].percent == 88 and bars["RAM"].level == "nearly-full"
    assert bars["GPU 0"].percent == 50
    assert w1.caps == ("PC1 2/4", "PC2(32GiB) 0/∞")
    assert page.summary == "2 worker(s), 2 connected, 2 task(s) running"
    draining = fleet.state_badges(model.WorkerState(False, True, True, False))
    assert [b.text for b in draining] == ["disconnected", "disabled", "draining"]


def test_queue_groups_by_reason_biggest_first() -> None:
    def request(call: str, reason: str) -> model.QueuedRequest:
        return model.QueuedRequest(
            call,
            KEY,
            "AP",
            0,
            NOW - 3,
            reason,
            reason == "task-type-not-enabled",
            (model.Rejection("w1", reason, "why"),),
        )

    diag = model.SchedDiag(
        requests=(
            request("a", "task-type-not-enabled"),
            request("b", "resources-busy"),
            request("c", "resources-busy"),
        ),
        workers=(model.SchedWorker("w1", "host", model.WorkerState(True, False, False, True), 0, 1),),
        awaiting_return=(),
        returned_work=0,
    )
    page = queue.build(diag, NOW)
    assert [g.reason for g in page.groups] == ["resources-busy", "task-type-not-enabled"]
    assert [r.call_id for r in page.groups[0].requests] == ["b", "c"]
    assert page.groups[1].requests[0].rejections[0].worker == "host:w1"
    assert page.total == 3 and page.unsatisfiable == 1
    assert page.groups[0].explanation == queue.REASONS["resources-busy"]


def test_storage_fullness_against_max_storage_or_the_file_system() -> None:
    def path(sid: str, capacity: int, fs_free: int, max_storage: int, used: int) -> model.StoragePath:
        return model.StoragePath(
            sid, (), 10, True, False, (), capacity, 0, fs_free, 0, max_storage, used, True, "", NOW, ()
        )

    page = storage.build([path("b", 100, 50, 10 << 20, 9 << 20), path("a", 100, 5, 0, 0)], {"a": ["w:/a"]}, NOW)
    a, b = page.paths
    assert (a.storage_id, a.bar.percent, a.fullness, a.limit, a.workers) == (
        "a",
        95,
        "nearly full",
        "file system",
        ("w:/a",),
    )
    assert (b.bar.percent, b.fullness, b.limit, b.counts) == (90, "nearly full", "max-storage", "no sector files")
    assert storage.build([], None, NOW).workers_known is False


def test_sector_timeline_and_steps() -> None:
    runs = [run("PC1", NOW - 100, 60), run("AP", NOW - 110, 5), run("PC2", NOW - 30, None, "running")]
    timeline = sectors.timeline(runs, NOW)
    assert timeline is not None
    assert [b.label for b in timeline.bars] == ["AP", "PC1", "PC2"]
    ap, pc1, pc2 = timeline.bars
    assert ap.x == sectors.TIMELINE_LEFT and pc2.x + pc2.width == pytest.approx(
        sectors.TIMELINE_LEFT + sectors.TIMELINE_WIDTH, abs=0.2
    )
    assert pc1.width > ap.width * 10 and pc1.took == "60.0 s" and pc2.outcome == "running"
    assert sectors.timeline([], NOW) is None
    status = model.SectorStatus(
        KEY, "2KiB", 5, "pre-commit-1-done", 1, (), (model.Step("pre-commit-1", NOW - 40),), "", (), NOW - 100, NOW - 40
    )
    page = sectors.build_sector(status, runs, [], (None, "not checked"), NOW)
    assert [(s.step, s.took) for s in page.steps] == [("pre-commit-1", "60.0 s")]


def test_history_chart_counts_per_hour_and_percentiles() -> None:
    runs = [run("PC1", NOW - 60 - i, float(i + 1)) for i in range(20)] + [
        run("AP", NOW - 7200, 2.0),
        run("AP", NOW - 3 * 86400, 1.0),
    ]
    runs.append(run("C2", NOW - 10, 5.0, "aborted"))
    chart = history.chart(runs, NOW)
    assert chart is not None
    assert sum(c.total for c in chart.columns) == 22  # the 3-day-old run is outside the 24 h
    assert chart.peak == 21
    p = {x.task: x for x in chart.percentiles}
    assert (p["PC1"].p50, p["PC1"].p95, p["PC1"].runs) == ("10.0 s", "19.0 s", 20)
    assert "C2" not in p  # no succeeded run
    assert history.percentile([1.0], 95) == 1.0
    page = history.build(runs, False, None, NOW)
    assert [r.outcome for r in page.failures] == ["aborted"] and page.failures[0].error == "aborted: stop"
    assert history.chart([], NOW) is None


def test_query_strings_are_checked() -> None:
    f = params.history_filter(
        {"sector": "1000/5", "task": "pc1", "failed": "1", "since": "6h", "worker": "ab-12"}, now=NOW
    )
    assert f == model.HistoryFilter(model.SectorKey(1000, 5), True, "PC1", "ab-12", NOW - 6 * 3600)
    assert params.history_filter({}) == model.HistoryFilter()
    for bad in (
        {"since": "-1h"},
        {"sector": "x/1"},
        {"sector": "1000/-1"},
        {"task": "nope"},
        {"worker": "a b"},
        {"zzz": "1"},
    ):
        with pytest.raises(params.BadRequest):
            params.history_filter(bad)
    with pytest.raises(params.BadRequest, match="whole number"):
        params.sector_key("1000", str(1 << 64))


def test_login_cookie_and_basic_auth() -> None:
    gate = Gate("correct horse", b"k" * 32, ttl_s=60)
    cookie = gate.issue(now=NOW)
    assert gate.cookie_ok(cookie, now=NOW + 59) and not gate.cookie_ok(cookie, now=NOW + 61)
    expiry, mac = cookie.split(".")
    assert not gate.cookie_ok(f"{int(expiry) + 1000}.{mac}", now=NOW)
    assert not gate.cookie_ok("garbage", now=NOW) and not gate.cookie_ok("", now=NOW)
    assert not Gate("correct horse", b"j" * 32, 60).cookie_ok(cookie, now=NOW)
    good = base64.b64encode(b"anyone:correct horse").decode()
    assert gate.basic_ok(f"Basic {good}") and not gate.basic_ok("Basic !!!") and not gate.basic_ok(f"Bearer {good}")
    assert not gate.basic_ok("Basic " + base64.b64encode(b"anyone:wrong").decode())


def test_a_new_password_ends_every_session() -> None:
    cookie = Gate("correct horse", b"k" * 32, ttl_s=60).issue(now=NOW)
    assert Gate("correct horse", b"k" * 32, ttl_s=60).cookie_ok(cookie, now=NOW)
    assert not Gate("battery staple", b"k" * 32, ttl_s=60).cookie_ok(cookie, now=NOW)


def test_failed_logins_block_an_address_for_the_rest_of_its_window() -> None:
    failures = FailedLogins(limit=3, window_s=10, max_addresses=2)
    for t in (0.0, 1.0, 2.0):
        assert failures.blocked("a", now=t) == 0
        failures.failed("a", now=t)
    assert failures.blocked("a", now=2.5) == pytest.approx(7.5)  # the oldest of the 3 leaves at 10
    assert failures.blocked("b", now=2.5) == 0  # another address is not affected
    assert failures.blocked("a", now=10.0) == 0  # one failure aged out: one more try
    failures.failed("a", now=10.0)
    assert failures.blocked("a", now=10.5) == pytest.approx(0.5)
    # At most max_addresses are remembered, oldest first out: a flood cannot grow it.
    failures.failed("b", now=11.0)
    failures.failed("c", now=11.0)
    assert set(failures._failures) == {"b", "c"}
