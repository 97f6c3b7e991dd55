"""The dashboard process over plain HTTP against a real fleet: what each page says (workers, the
nearly full path, a stuck request and why, a sealed sector's timeline and history), its login,
and that bad input, unknown things and a service that is down each get a readable page, never a
traceback, and never the fleet's key or the dashboard's token."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from services.common.proto.sectorstorage.v1 import manager_pb2
from services.devfleet import console_script
from tests.integration.web.conftest import WebFleet
from tests.support.auth import TEST_SECRET
from tests.support.fleet import free_port
from tests.support.sealing import seal_sector
from tests.support.sectors import sector
from tests.support.web import PASSWORD, Page, start_dashboard, write_secrets

SEALED = 1
STUCK = 9


def readable(page: Page) -> None:
    assert "Traceback" not in page.body and 'File "' not in page.body
    assert TEST_SECRET not in page.body


def text(page: Page) -> str:
    """The page's words without tags, spaces squeezed: what a person reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.body))


def wait_page(web: WebFleet, path: str, check: object, timeout: float = 30.0) -> Page:
    deadline = time.monotonic() + timeout
    while True:
        page = web.dashboard.get(path)
        if page.status == 200 and check(text(page)):  # type: ignore[operator]
            return page
        assert time.monotonic() < deadline, text(page)
        time.sleep(0.3)


@pytest.fixture(scope="module")
def sealed(web_fleet: WebFleet) -> Iterator[str]:
    """Sector 1 sealed while the test watches the fleet page: the running PC1 shows on a worker."""
    ref = sector(SEALED)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            seal_sector(web_fleet.fleet, ref)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    page = wait_page(web_fleet, "/fleet", lambda t: "PC1 1000/1 running" in t, timeout=60)
    thread.join(180)
    assert not errors, errors
    yield text(page)


def test_fleet_page_shows_both_workers_and_the_running_task(web_fleet: WebFleet, sealed: str) -> None:
    assert "dash-w1" in sealed and "dash-w2" in sealed
    assert "2 worker(s), 2 connected" in sealed
    assert "PC1 1000/1 running" in sealed
    page = web_fleet.dashboard.get("/fleet")
    readable(page)
    assert page.body.count('class="card worker"') == 2
    assert "CPU" in text(page) and "RAM" in text(page) and "threads" in text(page)
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_storage_page_shows_the_nearly_full_path(web_fleet: WebFleet) -> None:
    page = wait_page(web_fleet, "/storage", lambda t: "nearly full" in t)
    readable(page)
    card = re.search(
        rf'<section class="card path level-(\S+)" data-storage-id="{web_fleet.full_path_id}">(.*?)</section>',
        page.body,
        re.S,
    )
    assert card, page.body
    assert card.group(1) == "nearly-full"
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", card.group(2)))
    assert "nearly full" in words and "9" in words and "max-storage" in words, words
    assert re.search(r"\b9[01]% · 9\.0 MiB / 10 MiB", words), words
    assert "Weight 1 · use: store" in words
    # The other paths are not nearly full.
    assert len(re.findall(r"level-nearly-full\" data-storage-id", page.body)) == 1


def test_sector_page_shows_the_timeline_files_and_provable(web_fleet: WebFleet, sealed: str) -> None:
    page = web_fleet.dashboard.get(f"/sectors/1000/{SEALED}")
    assert page.status == 200, page.body
    readable(page)
    words = text(page)
    assert "State finalized" in words
    assert "provable" in words and "not provable" not in words
    runs = re.findall(r'<g class="run outcome-(\S+)">\s*<text[^>]*>([^<]+)</text>', page.body)
    tasks = [label for _, label in runs]
    for task in ("AP", "PC1", "PC2", "C1", "C2", "FIN"):
        assert task in tasks, tasks
    assert all(outcome == "succeeded" for outcome, _ in runs), runs
    # The slow PC1 (a 4 s delay) is the longest bar.
    pc1 = re.search(r">PC1</text>\s*<rect x=\"[\d.]+\" y=\"[\d.]+\" width=\"([\d.]+)\"", page.body)
    assert pc1 and float(pc1.group(1)) > 300, pc1
    for step in ("pre-commit-1", "pre-commit-2", "commit-2", "finalize", "move-storage"):
        assert step in words
    assert "sealed" in words and "cache" in words  # where its files are
    listing = text(web_fleet.dashboard.get("/sectors"))
    assert "1000/1 finalized 2KiB" in listing


def test_history_lists_runs_and_the_chart(web_fleet: WebFleet, sealed: str) -> None:
    page = web_fleet.dashboard.get("/history?sector=1000/1")
    readable(page)
    words = text(page)
    assert "No failed run matches the filters" in words
    assert words.count(" succeeded ") >= 6
    assert "Tasks per hour" in words and "p50" in words and "p95" in words
    pc1 = web_fleet.dashboard.get("/history?task=pc1&since=1h")
    assert pc1.status == 200
    assert re.findall(r"<td>(AP|PC1|PC2|C1|C2|FIN)</td>", pc1.body.split("All runs")[1]) == ["PC1"]


def test_a_stuck_request_shows_with_its_reason(web_fleet: WebFleet) -> None:
    """Both workers cordoned: the fleet page says so, and a new sector's AddPiece waits in the
    queue under 'worker-unavailable' with each worker's answer, until it is aborted."""
    fleet = web_fleet.fleet
    stub = fleet.stub()
    ids = list(fleet.worker_ids.values())
    for wid in ids:
        stub.CordonWorker(manager_pb2.CordonWorkerRequest(worker_id=wid), timeout=10)
    errors: list[BaseException] = []
    try:
        page = wait_page(web_fleet, "/fleet", lambda t: t.count("cordoned") == 2)
        assert re.search(
            r"dash-w1\s*<span class=\"badge good\">connected</span>\s*<span class=\"badge warn\">cordoned</span>",
            page.body,
        )

        def add() -> None:
            try:
                seal_sector(fleet, sector(STUCK))
            except BaseException as exc:  # noqa: BLE001 - the abort ends it
                errors.append(exc)

        thread = threading.Thread(target=add, daemon=True)
        thread.start()
        page = wait_page(web_fleet, "/queue", lambda t: "worker-unavailable" in t and "1000/9" in t)
        readable(page)
        group = re.search(
            r'<section class="card reason" data-reason="worker-unavailable">(.*?)</section>', page.body, re.S
        )
        assert group, page.body
        words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", group.group(1)))
        assert "the workers are disabled, cordoned, draining or disconnected" in words
        assert "1000/9 AP" in words
        for wid in ids:
            assert f"{wid[:8]}: worker-unavailable" in words
        call = stub.SchedDiag(manager_pb2.SchedDiagRequest(), timeout=10).requests[0].call_id
        stub.Abort(manager_pb2.AbortRequest(call_id=call, reason="test"), timeout=10)
        thread.join(30)
        assert errors
        wait_page(web_fleet, "/queue", lambda t: "The queue is empty" in t)
    finally:
        for wid in ids:
            stub.UncordonWorker(manager_pb2.UncordonWorkerRequest(worker_id=wid), timeout=10)


def test_failed_runs_come_first_in_history(web_fleet: WebFleet) -> None:
    """The aborted AddPiece of the stuck sector is listed under Failures, with its error."""
    page = wait_page(web_fleet, "/history", lambda t: "aborted" in t)
    failures = page.body.split("<h2>Failures</h2>")[1].split("<h2>All runs")[0]
    assert "1000/9" in failures and "aborted" in failures
    filtered = web_fleet.dashboard.get("/history?failed=1")
    assert "1000/1" not in filtered.body.split("<h2>All runs")[1]


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/sectors/1000/424242", 404, "The manager knows no sector 1000/424242"),
        ("/sectors/1000/abc", 400, "the sector number must be a whole number"),
        ("/sectors/1000/99999999999999999999999", 400, "the sector number must be a whole number"),
        ("/history?since=yesterday", 400, "since must be a duration like 30m"),
        ("/history?sector=5", 400, "sector must be MINER/NUMBER"),
        ("/history?task=PC9", 400, "unknown task type &#39;PC9&#39;"),
        ("/history?failed=maybe", 400, "failed must be 1 or 0"),
        ("/history?worker=%3Cscript%3E", 400, "worker must be a worker id"),
        ("/history?%3Cb%3E=1", 400, "unknown parameter(s) &#39;&lt;b&gt;&#39;"),
        ("/fleet?x=1", 400, "this page takes no query parameters"),
        ("/no-such-page", 404, "There is no page"),
    ],
)
def test_bad_input_gets_a_readable_page(web_fleet: WebFleet, path: str, status: int, says: str) -> None:
    page = web_fleet.dashboard.get(path)
    assert page.status == status, page.body
    readable(page)
    assert says in page.body
    assert "<script>" not in page.body.replace('<script src="/static/dashboard.js" defer></script>', "")


def test_login_is_needed_and_no_secret_is_shown(web_fleet: WebFleet) -> None:
    dash = web_fleet.dashboard
    anonymous = dash.get("/fleet", auth=False)
    assert anonymous.status == 303 and unquote(anonymous.headers["Location"]) == "/login?next=/fleet"
    assert dash.get("/fleet", auth=False, accept="application/json").status == 401
    assert dash.get("/fleet", password="wrong-password").status in (303, 401)
    assert dash.get("/healthz", auth=False).status == 200
    assert dash.get("/login", auth=False).status == 200
    for path in ("/fleet", "/queue", "/storage", "/sectors", "/history", f"/sectors/1000/{SEALED}", "/login"):
        page = dash.get(path)
        assert dash.read_token not in page.body and TEST_SECRET not in page.body and PASSWORD not in page.body


def test_a_service_that_is_down_is_named_and_the_dashboard_stays_up(web_fleet: WebFleet) -> None:
    """A second dashboard whose index address has nothing behind it: the storage page says the
    index is not answering (503), the fleet page still shows the manager's workers."""
    dead = f"127.0.0.1:{free_port()}"
    other = start_dashboard(web_fleet.start, web_fleet.fleet.address, dead, web_fleet.tmp / "dash-dead-index")  # type: ignore[arg-type]
    page = other.get("/storage")
    assert page.status == 503
    readable(page)
    assert f"The index at {dead} is not answering" in text(page)
    fleet_page = other.get("/fleet")
    assert fleet_page.status == 200 and "dash-w1" in fleet_page.body
    sector_page = other.get(f"/sectors/1000/{SEALED}")
    assert sector_page.status == 200 and f"The index at {dead} is not answering" in text(sector_page)
    assert "State finalized" in text(sector_page)
    assert other.get("/healthz").status == 200
    other.proc.stop()


def test_start_up_refuses_a_token_that_can_write_and_a_missing_password(web_fleet: WebFleet, tmp_path: Path) -> None:
    from services.common.auth import Permission

    token_file, password_file, _ = write_secrets(tmp_path, permission=Permission.WRITE)
    base = [console_script("sectorstorage-web"), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d")]
    base += ["--manager", web_fleet.fleet.address, "--index", web_fleet.fleet.index.address]
    proc = subprocess.run(
        [*base, "--token-file", str(token_file), "--password-file", str(password_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "give it a read token" in proc.stderr, proc.stderr
    read_file, _, _ = write_secrets(tmp_path / "r")
    proc = subprocess.run([*base, "--token-file", str(read_file)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "no dashboard password" in proc.stderr, proc.stderr
    proc = subprocess.run(
        [*base[:2], "0.0.0.0:0", *base[3:], "--token-file", str(read_file), "--auth", "proxy"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "may only listen on loopback" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_token_the_services_refuse_is_named_on_the_page(web_fleet: WebFleet) -> None:
    """A read token signed with another fleet's key: the manager refuses it, and the page says so
    (not 'down'), naming the service and its answer."""
    from services.common.auth import Permission, create_token

    folder = web_fleet.tmp / "dash-foreign"
    other = start_dashboard(web_fleet.start, web_fleet.fleet.address, web_fleet.fleet.index.address, folder)  # type: ignore[arg-type]
    other.proc.stop()
    (folder / "web.token").write_text(create_token(b"k" * 40, Permission.READ, subject="dashboard") + "\n")
    other = start_dashboard(
        web_fleet.start,  # type: ignore[arg-type]
        web_fleet.fleet.address,
        web_fleet.fleet.index.address,
        folder,
        keep_token=True,
    )
    page = other.get("/fleet")
    assert page.status == 503
    assert f"The manager at {web_fleet.fleet.address} refused the dashboard's call (UNAUTHENTICATED" in text(page)
    other.proc.stop()


def test_concurrent_pages_and_a_manager_that_dies_and_comes_back(web_fleet: WebFleet, sealed: str) -> None:
    """Forty pages at once from eight threads all answer; then the manager is killed: the pages say
    it is down and the dashboard keeps answering; it comes back on its address and the pages
    recover without a dashboard restart."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [
        "/fleet",
        "/queue",
        "/storage",
        "/sectors",
        "/history",
        f"/sectors/1000/{SEALED}",
        "/history?failed=1",
        "/nope",
    ]
    with ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(web_fleet.dashboard.get, paths * 5))
    assert [p.status for p in pages] == [404 if p == "/nope" else 200 for p in paths * 5]
    assert all("Traceback" not in p.body for p in pages)

    fleet = web_fleet.fleet
    fleet.manager.kill()
    try:
        page = wait_page_status(web_fleet, "/fleet", 503)
        assert f"The manager at {fleet.address} is not answering" in text(page)
        storage_page = web_fleet.dashboard.get("/storage")
        assert storage_page.status == 200 and "Workers unknown (the manager did not answer)" in text(storage_page)
        assert web_fleet.dashboard.get("/healthz").status == 200
        history_page = web_fleet.dashboard.get("/history?task=PC1")
        assert history_page.status == 503 and text(history_page).count(f"The manager at {fleet.address}") == 1
    finally:
        fleet.start_manager()
    fleet.wait_registered()
    page = wait_page(web_fleet, "/fleet", lambda t: "2 worker(s), 2 connected" in t)
    assert "not answering" not in page.body


def wait_page_status(web: WebFleet, path: str, status: int, timeout: float = 30.0) -> Page:
    deadline = time.monotonic() + timeout
    while True:
        page = web.dashboard.get(path)
        if page.status == status:
            return page
        assert time.monotonic() < deadline, (page.status, text(page))
        time.sleep(0.3)


def test_login_form_sets_a_cookie_and_never_redirects_elsewhere(web_fleet: WebFleet) -> None:
    import http.client
    from urllib.parse import urlencode

    host, port = web_fleet.dashboard.proc.address.rsplit(":", 1)

    def post(form: dict[str, str]) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(
            "POST", "/login", body=urlencode(form), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        response = conn.getresponse()
        response.read()
        return response

    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = post({"password": PASSWORD, "next": target})
        assert response.status == 303 and response.headers["Location"] == "/", target
    response = post({"password": PASSWORD, "next": "/history?failed=1"})
    assert response.headers["Location"] == "/history?failed=1"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain HTTP here
    wrong = post({"password": "not-the-password", "next": "/"})
    assert wrong.status == 401 and wrong.headers.get("Set-Cookie") is None
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/queue", headers={"Cookie": cookie.split(";")[0]})
    assert conn.getresponse().status == 200
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    forged = cookie.split(";")[0].split("=", 1)[1].split(".")[0] + ".0000"
    conn.request("GET", "/queue", headers={"Cookie": f"sectorstorage_dashboard={forged}", "Accept": "text/html"})
    assert conn.getresponse().status == 303


def test_proxy_mode_on_loopback_has_no_login_of_its_own(web_fleet: WebFleet) -> None:
    """auth = proxy: the operator's proxy authenticates, so the dashboard (on loopback) serves
    every page without a password, shows no log-out button, and still never shows its token."""
    folder = web_fleet.tmp / "dash-proxy"
    proxied = start_dashboard(
        web_fleet.start,  # type: ignore[arg-type]
        web_fleet.fleet.address,
        web_fleet.fleet.index.address,
        folder,
        env={"SECTORSTORAGE_WEB_AUTH": "proxy"},
    )
    page = proxied.get("/fleet", auth=False)
    assert page.status == 200 and "dash-w1" in page.body and "Log out" not in page.body
    assert proxied.read_token not in page.body
    assert proxied.get("/login", auth=False).status == 200  # harmless: logging in sets nothing needed
    proxied.proc.stop()


def test_password_guessing_is_refused_without_locking_out_a_logged_in_user(web_fleet: WebFleet) -> None:
    """Ten wrong passwords from one address: the next try is 429 without its password being
    checked (even the right one), by basic auth and by the form, while a cookie issued before
    still opens every page. (Its own dashboard: the block would hold the other tests up.)"""
    import http.client
    from urllib.parse import urlencode

    guarded = start_dashboard(
        web_fleet.start,  # type: ignore[arg-type]
        web_fleet.fleet.address,
        web_fleet.fleet.index.address,
        web_fleet.tmp / "dash-guessing",
    )
    host, port = guarded.proc.address.rsplit(":", 1)

    def send(
        method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(), response.headers.get("Set-Cookie", "")

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        status, _, cookie = send("POST", "/login", urlencode({"password": guarded.password}), form)
        assert status == 303 and cookie
        for _ in range(10):
            assert guarded.get("/fleet", password="not-the-password", accept="application/json").status == 401
        refused = guarded.get("/fleet", accept="application/json")  # the right password, too late
        assert refused.status == 429 and "too many wrong passwords" in refused.body
        status, body, cookie_set = send("POST", "/login", urlencode({"password": guarded.password}), form)
        assert status == 429 and "too many wrong passwords" in body and not cookie_set
        status, body, _ = send("GET", "/fleet", headers={"Cookie": cookie.split(";")[0]})
        assert status == 200 and "dash-w1" in body
    finally:
        guarded.proc.stop()
