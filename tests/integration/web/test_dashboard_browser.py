"""The dashboard in a real browser (headless Chromium through selenium) against a real fleet:
a person logs in, watches a seal start on the fleet page (which refreshes itself, without a
reload), sees a cordoned worker, the nearly full path, a stuck request with its reason, the
sealed sector's timeline and the history; every page is saved as a screenshot under
test-output/dashboard/."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException

from services.common.proto.sectorstorage.v1 import manager_pb2
from tests.integration.web.conftest import WebFleet
from tests.support.browser import browser, output_dir  # noqa: F401 - the fixture
from tests.support.sealing import seal_sector
from tests.support.sectors import sector

pytestmark = pytest.mark.slow
Driver = Any


def shot(driver: Driver, name: str) -> None:
    path = output_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, path


def until(driver: Driver, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, body(driver)
        time.sleep(0.2)


def body(driver: Driver) -> str:
    """The page's text. A click that submits a form returns before the next page replaces this
    one, so an element found just then can go stale: look again (at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return str(driver.find_element("tag name", "body").text)
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def cards(driver: Driver, selector: str) -> dict[str, Any]:
    """Cards by their heading's first word (a worker's name, a path's id)."""
    out = {}
    for card in driver.find_elements("css selector", selector):
        out[card.find_element("tag name", "h2").text.split()[0]] = card
    return out


@pytest.fixture(scope="module")
def session(web_fleet: WebFleet, browser: Driver) -> Iterator[Driver]:  # noqa: F811 - the fixture
    """Logged in through the form, as a person would."""
    browser.get(web_fleet.dashboard.url + "/fleet")
    assert "/login" in browser.current_url
    shot(browser, "login")
    browser.find_element("id", "password").send_keys("wrong password")
    browser.find_element("id", "login").click()
    # The click returns before the answer replaces the login page: wait for it.
    until(browser, lambda: "Wrong password" in body(browser))
    browser.find_element("id", "password").send_keys(web_fleet.dashboard.password)
    browser.find_element("id", "login").click()
    until(browser, lambda: browser.current_url.endswith("/fleet"))
    yield browser


@pytest.fixture(scope="module")
def sealed(web_fleet: WebFleet, session: Driver) -> Iterator[None]:
    """Sector 1 sealed while the fleet page stays open: its running PC1 appears on a worker's card
    by the page's own refresh."""
    session.get(web_fleet.dashboard.url + "/fleet")
    session.execute_script("window.notReloaded = true;")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            seal_sector(web_fleet.fleet, sector(1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def pc1_running() -> bool:
        rows = session.find_elements("css selector", "section.worker tr.task")
        return any(r.text.startswith("PC1 1000/1 running") for r in rows)

    until(session, pc1_running, timeout=60)
    assert session.execute_script("return window.notReloaded === true;"), "the page was reloaded, not refreshed"
    workers = cards(session, "section.worker")
    assert set(workers) == {"dash-w1", "dash-w2"}
    busy = [name for name, card in workers.items() if "PC1 1000/1 running" in card.text]
    assert len(busy) == 1, {n: c.text for n, c in workers.items()}
    idle = ({"dash-w1", "dash-w2"} - set(busy)).pop()
    assert "No task on this worker." in workers[idle].text
    assert "connected" in workers[busy[0]].text and "CPU" in workers[busy[0]].text
    shot(session, "fleet-running")
    thread.join(180)
    assert not errors, errors
    yield None


def test_fleet_shows_a_cordoned_worker(web_fleet: WebFleet, session: Driver, sealed: None) -> None:
    stub = web_fleet.fleet.stub()
    wid = web_fleet.fleet.worker_ids["dash-w2"]
    stub.CordonWorker(manager_pb2.CordonWorkerRequest(worker_id=wid), timeout=10)
    try:
        session.get(web_fleet.dashboard.url + "/fleet")
        until(session, lambda: "cordoned" in cards(session, "section.worker")["dash-w2"].text)
        badges = [
            b.text for b in cards(session, "section.worker")["dash-w2"].find_elements("css selector", "h2 .badge")
        ]
        assert badges == ["connected", "cordoned"]
        assert "cordoned" not in cards(session, "section.worker")["dash-w1"].text
        shot(session, "fleet-cordoned")
    finally:
        stub.UncordonWorker(manager_pb2.UncordonWorkerRequest(worker_id=wid), timeout=10)


def test_storage_shows_the_path_at_90_percent_as_nearly_full(web_fleet: WebFleet, session: Driver) -> None:
    session.get(web_fleet.dashboard.url + "/storage")
    until(session, lambda: web_fleet.full_path_id in cards(session, "section.path"))
    full = cards(session, "section.path")[web_fleet.full_path_id]
    assert full.find_element("css selector", ".fullness").text == "nearly full"
    meter = full.find_element("css selector", ".bar")
    assert meter.get_attribute("aria-valuenow") in ("90", "91")
    fill = full.find_element("css selector", ".fill")
    assert 0.85 <= fill.size["width"] / meter.size["width"] <= 0.95
    others = [c for sid, c in cards(session, "section.path").items() if sid != web_fleet.full_path_id]
    assert others and all("nearly full" not in c.text for c in others)
    shot(session, "storage")


def test_queue_shows_a_stuck_request_and_why(web_fleet: WebFleet, session: Driver) -> None:
    fleet = web_fleet.fleet
    stub = fleet.stub()
    ids = list(fleet.worker_ids.values())
    for wid in ids:
        stub.CordonWorker(manager_pb2.CordonWorkerRequest(worker_id=wid), timeout=10)
    thread = threading.Thread(target=lambda: _quietly(lambda: seal_sector(fleet, sector(9))), daemon=True)
    try:
        thread.start()
        session.get(web_fleet.dashboard.url + "/queue")
        until(
            session,
            lambda: bool(session.find_elements("css selector", 'section[data-reason="worker-unavailable"] tr.request')),
        )
        group = session.find_element("css selector", 'section[data-reason="worker-unavailable"]')
        assert "the workers are disabled, cordoned, draining or disconnected" in group.text
        row = group.find_element("css selector", "tr.request")
        assert "1000/9" in row.text and " AP " in f" {row.text} "
        assert len(row.find_elements("css selector", ".rejection")) == 2
        shot(session, "queue-stuck")
        call = stub.SchedDiag(manager_pb2.SchedDiagRequest(), timeout=10).requests[0].call_id
        stub.Abort(manager_pb2.AbortRequest(call_id=call, reason="browser test"), timeout=10)
        thread.join(30)
    finally:
        for wid in ids:
            stub.UncordonWorker(manager_pb2.UncordonWorkerRequest(worker_id=wid), timeout=10)


def _quietly(call: Callable[[], None]) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 - aborted on purpose
        pass


def test_sector_page_shows_the_timeline_after_sealing(web_fleet: WebFleet, session: Driver, sealed: None) -> None:
    session.get(web_fleet.dashboard.url + "/sectors")
    session.find_element("link text", "1000/1").click()
    until(session, lambda: session.current_url.endswith("/sectors/1000/1"))
    text = body(session)
    assert "State finalized" in text and "provable" in text and "not provable" not in text
    runs = session.find_elements("css selector", "svg.timeline g.run")
    labels = [r.find_element("tag name", "text").text for r in runs]
    assert labels[:6] == ["AP", "PC1", "PC2", "C1", "C2", "FIN"], labels
    widths = {label: r.find_element("tag name", "rect").size["width"] for label, r in zip(labels, runs)}
    assert widths["PC1"] == max(widths.values())  # the slow one
    steps = [r.text.split()[0] for r in session.find_elements("css selector", "table.steps tr.step")]
    assert steps == ["pre-commit-1", "pre-commit-2", "commit-1", "commit-2", "finalize", "move-storage"]
    assert session.find_elements("css selector", "table.files tr.location")
    shot(session, "sector")


def test_history_and_chart(web_fleet: WebFleet, session: Driver, sealed: None) -> None:
    session.get(web_fleet.dashboard.url + "/history")
    until(session, lambda: bool(session.find_elements("css selector", "table.runs.all tr.run")))
    assert session.find_elements("css selector", "svg.chart g.hour rect")
    assert session.find_elements("css selector", "svg.chart g.percentile")
    shot(session, "history")
    session.find_element("name", "task").send_keys("PC1")
    session.find_element("css selector", "form.filters button").click()
    until(session, lambda: "task=PC1" in session.current_url)
    tasks = {
        r.find_elements("tag name", "td")[2].text
        for r in session.find_elements("css selector", "table.runs.all tr.run")
    }
    assert tasks == {"PC1"}


def test_bad_input_is_a_readable_page(web_fleet: WebFleet, session: Driver) -> None:
    session.get(web_fleet.dashboard.url + "/sectors/1000/31337")
    assert session.find_element("css selector", "h1").text == "404 · No such sector"
    assert "The manager knows no sector 1000/31337." in body(session)
    session.get(web_fleet.dashboard.url + "/history?since=last-tuesday")
    assert session.find_element("css selector", "h1").text == "400 · Bad request"
    assert "Traceback" not in session.page_source
    shot(session, "bad-request")
