"""sectorctl end to end: one real fleet (index, manager, two workers) for the module, and the
CLI run as a real subprocess (.venv/bin/sectorctl) for every verb, human output and --json.

A 2 KiB sector is sealed from two files through the manager; then storage find lists its sealed
and cache files, the task history lists its PC1..C2 runs, it reads back (unsealing) and proves
with a Window PoSt; workers are cordoned, disabled, drained; a storage path is attached,
redeclared and detached; and errors come out as `sectorctl: CODE: message` with distinct exit
codes (unknown worker, no manager, wrong token).
"""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.devfleet import ServiceProcess, console_script
from tests.support.auth import TEST_SECRET, token
from tests.support.fleet import FAST_WORKER_ENV, MANAGER_ENV, service_group

SECTORCTL = console_script("sectorctl")
MINER = 1000
FILE_A = bytes(range(256)) * 3 + b"sectorctl"  # 777 bytes -> a 1016-byte piece
FILE_B = b"the second file " * 20  # 320 bytes -> a 508-byte piece


@dataclass
class CliFleet:
    index: ServiceProcess
    manager: ServiceProcess
    workers: list[ServiceProcess]
    tmp: Path
    env: dict[str, str]

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SECTORCTL, *args], capture_output=True, text=True, env=env or self.env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"sectorctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run("--json", *args).stdout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliFleet]:
    tmp = tmp_path_factory.mktemp("sectorctl")
    processes = service_group(tmp)
    start = processes.start
    try:
        index = start("index", "index")
        manager = start("manager", "manager", "--index", index.address, env=MANAGER_ENV)
        workers = [
            start(
                "worker",
                f"w{i}",
                "--index",
                index.address,
                "--manager",
                manager.address,
                env={**FAST_WORKER_ENV, "SECTORSTORAGE_WORKER_NAME": f"cli-w{i}", **caps},
            )
            for i, caps in ((1, {"SECTORSTORAGE_WORKER_RESOURCES": "{PC1_MAX_CONCURRENT = 4}"}), (2, {}))
        ]
        env = {
            **os.environ,
            "SECTORSTORAGE_MANAGER": manager.address,
            "SECTORSTORAGE_INDEX": index.address,
            "SECTORSTORAGE_TOKEN": token(),
            "SECTORSTORAGE_AUTH_SECRET": TEST_SECRET,
        }
        cli = CliFleet(index, manager, workers, tmp, env)
        for i, w in enumerate(workers, start=1):
            cli.run(
                "storage",
                "attach",
                "--init",
                "--seal",
                "--store",
                "--weight",
                "10",
                "--worker",
                w.address,
                str(tmp / f"store-{i}"),
            )
        deadline = time.monotonic() + 30
        while True:
            stats = cli.json("sealing", "workers")["workers"]
            if len([w for w in stats if w["state"]["connected"] and w["info"]["paths"]]) == 2:
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.2)
        yield cli
    finally:
        processes.close(timeout=10)


@pytest.fixture(scope="module")
def sealed(fleet: CliFleet) -> dict[str, Any]:
    """Sector 1 of miner 1000 sealed from two files (human output checked in its own test)."""
    a, b = fleet.tmp / "a.bin", fleet.tmp / "b.txt"
    a.write_bytes(FILE_A)
    b.write_bytes(FILE_B)
    proc = fleet.run("--json", "sectors", "seal", "--size", "2KiB", "--sector", "1", str(a), str(b))
    document: dict[str, Any] = json.loads(proc.stdout)
    document["progress"] = proc.stderr
    return document


def test_seal_json_reports_commitments_pieces_and_a_valid_proof(sealed: dict[str, Any]) -> None:
    assert sealed["verified"] is True
    assert sealed["sector"] == {"miner": 1000, "number": 1, "proof_type": "REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1"}
    assert len(bytes.fromhex(sealed["comm_r"])) == 32 and sealed["sealed_cid"].startswith("bagboea")
    assert sealed["unsealed_cid"].startswith("baga6ea")
    # two files (1024 + 512 padded) and one 512-byte zero piece fill the 2 KiB sector
    assert [p["size"] for p in sealed["pieces"]] == [1024, 512, 512]
    assert sealed["proof_bytes"] > 0
    # progress goes to stderr with --json (stdout is one document), plain lines when not a TTY
    for task in ("AddPiece a.bin", "AddPiece b.txt", "PreCommit1", "PreCommit2", "Commit1", "Commit2", "Finalize"):
        assert f"{task}" in sealed["progress"] and "done in" in sealed["progress"]


def test_seal_human_output_and_files_that_do_not_fit(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    f = fleet.tmp / "c.bin"
    f.write_bytes(b"x" * 100)
    out = fleet.run("sectors", "seal", "--size", "2KiB", str(f)).stdout  # next free number: 2
    assert "sector 1000/2 sealed" in out
    assert "PreCommit1" in out and "started" in out and "done in" in out
    assert "comm_r  bagboea" in out and "comm_d  baga6ea" in out
    assert out.count("piece   baga6ea") == 5  # 128-byte piece + 128, 256, 512, 1024 padding
    assert "VerifySeal: VALID" in out

    big = fleet.tmp / "big.bin"
    big.write_bytes(b"y" * 2033)
    proc = fleet.run("sectors", "seal", "--size", "2KiB", str(big), check=False)
    assert proc.returncode == 2
    assert "don't fit in a 2 KiB sector" in proc.stderr and "2032 bytes" in proc.stderr


def test_seal_on_a_terminal_redraws_the_running_task_in_place(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    f = fleet.tmp / "tty.bin"
    f.write_bytes(b"z" * 500)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [SECTORCTL, "sectors", "seal", "--size", "2KiB", "--sector", "3", str(f)],
        stdout=child,
        stderr=child,
        env=fleet.env,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(timeout=60) == 0
    out = b"".join(chunks).decode()
    assert "\r\x1b[2K  PreCommit1" in out  # the task's line is rewritten in place
    assert "started" not in out  # no separate start lines on a terminal
    assert "Commit2" in out and "VerifySeal: VALID" in out


def test_storage_find_lists_sealed_and_cache(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    found = fleet.json("storage", "find", "1")
    types = {t for loc in found["locations"] for t in loc["type_names"]}
    assert {"sealed", "cache"} <= types and "unsealed" not in types  # finalized without keep-unsealed
    holder = next(loc for loc in found["locations"] if "sealed" in loc["type_names"])
    assert holder["primary"] and holder["workers"]
    out = fleet.run("storage", "find", "1").stdout
    assert "sector 1000/1:" in out and "sealed, cache" in out and "primary" in out


def test_history_lists_the_sectors_runs(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    runs = fleet.json("sealing", "history", "--sector", "1")["runs"]
    tasks = [r["task_type"] for r in runs]
    for t in (
        "TASK_TYPE_ADD_PIECE",
        "TASK_TYPE_PRE_COMMIT_1",
        "TASK_TYPE_PRE_COMMIT_2",
        "TASK_TYPE_COMMIT_1",
        "TASK_TYPE_COMMIT_2",
        "TASK_TYPE_FINALIZE",
    ):
        assert t in tasks
    assert tasks.count("TASK_TYPE_ADD_PIECE") == 3
    assert all(r["outcome"] == "TASK_OUTCOME_SUCCEEDED" and r["sector"]["id"]["number"] == "1" for r in runs)
    # --limit pages through next_page_token (page size 1 here would be 1 run; 4 runs span pages)
    assert len(fleet.json("sealing", "history", "--sector", "1", "--limit", "4")["runs"]) == 4
    assert fleet.json("sealing", "history", "--failed")["runs"] == []
    out = fleet.run("sealing", "history", "--sector", "1").stdout
    assert out.splitlines()[0].split()[:4] == ["CALL", "SECTOR", "TASK", "TRY"]
    for t in ("AP", "PC1", "PC2", "C1", "C2", "FIN"):
        assert f" {t} " in out
    assert "succeeded" in out


def test_read_unseals_and_returns_the_file(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    out = fleet.tmp / "read.bin"
    doc = fleet.json(
        "sectors",
        "read",
        "1",
        "--offset",
        "0",
        "--length",
        "1016",
        "--out",
        str(out),
        "--unsealed-cid",
        sealed["unsealed_cid"],
    )
    assert doc["did_unseal"] is True and doc["size"] == 1016
    assert out.read_bytes() == FILE_A + bytes(1016 - len(FILE_A))
    # the second file starts at unpadded offset 1016 (padded 1024); raw bytes to stdout
    raw = subprocess.run(
        [SECTORCTL, "sectors", "read", "1", "--offset", "1016", "--length", "508"],
        capture_output=True,
        env=fleet.env,
        timeout=60,
    )
    assert raw.returncode == 0 and raw.stdout == FILE_B + bytes(508 - len(FILE_B))


def test_check_and_window_post(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    doc = fleet.json("sectors", "check", "1", "77")
    assert doc["provable"] == [1] and [b["number"] for b in doc["bad_sectors"]] == [77]
    out = fleet.run("sectors", "check", f"1={sealed['sealed_cid']}", "--expensive").stdout
    assert "1000/1  ok" in out and "1/1 provable" in out

    post = fleet.json("proving", "window-post", f"1={sealed['sealed_cid']}", "--randomness", "11" * 31 + "00")
    assert post["valid"] is True and post["proofs"] == 1 and post["proof_bytes"] > 0 and post["skipped"] == []
    out = fleet.run("proving", "window-post", f"1={sealed['comm_r']}").stdout
    assert "verification: VALID" in out and "bytes, generated in" in out
    # A bare number: the manager recorded the sector's CommR from its SealPreCommit2.
    post = fleet.json("proving", "window-post", "1", "--randomness", "11" * 31 + "00")
    assert post["valid"] is True and post["sectors"] == [1] and post["proofs"] == 1 and post["skipped"] == []
    out = fleet.run("proving", "window-post", "1").stdout
    assert "verification: VALID" in out
    out = fleet.run("sectors", "check", "1", "--expensive").stdout
    assert "1000/1  ok" in out and "1/1 provable" in out
    proc = fleet.run("proving", "window-post", "1", "77", check=False)
    assert (
        proc.returncode == 2
        and "1000/77" in proc.stderr
        and "NOT_FOUND" in proc.stderr
        and "NUMBER=COMMR" in proc.stderr
    )
    # A sector nobody holds is skipped; the proof covers the rest and verifies (exit 1: faults to declare).
    proc = fleet.run("--json", "proving", "window-post", "1", f"77={sealed['comm_r']}", check=False)
    post = json.loads(proc.stdout)
    assert (
        proc.returncode == 1
        and post["proven"] == [1]
        and [b["number"] for b in post["skipped"]] == [77]
        and post["valid"] is True
    )
    out = fleet.run("proving", "window-post", "1", f"77={sealed['comm_r']}", check=False).stdout
    assert "skipped 1000/77" in out and "the proof covers the other 1" in out and "verification: VALID" in out


def test_sectors_info_shows_the_recorded_commitments(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    doc = fleet.json("sectors", "info", "1")
    assert doc["sector"] == sealed["sector"]
    assert {k: doc[k] for k in ("comm_r", "comm_d", "sealed_cid", "unsealed_cid")} == {
        k: sealed[k] for k in ("comm_r", "comm_d", "sealed_cid", "unsealed_cid")
    }
    assert doc["recorded_at"].endswith("Z")
    out = fleet.run("sectors", "info", "1").stdout
    assert "sector 1000/1" in out and "REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1 (2 KiB)" in out
    assert f"comm_r  {sealed['sealed_cid']}  ({sealed['comm_r']})" in out
    assert f"comm_d  {sealed['unsealed_cid']}  ({sealed['comm_d']})" in out
    proc = fleet.run("sectors", "info", "77", check=False)
    assert proc.returncode == 1 and "sectorctl: NOT_FOUND: no SealPreCommit2 result is known" in proc.stderr


def test_sectors_status_shows_the_lifecycle(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    doc = fleet.json("sectors", "status", "1")
    assert doc["sector"] == sealed["sector"]
    assert doc["state"] == "FINALIZED" and doc["generation"] == 1 and doc["jobs"] == [] and not doc["last_error"]
    assert [s["step"] for s in doc["steps"]] == [
        "PRE_COMMIT_1",
        "PRE_COMMIT_2",
        "COMMIT_1",
        "COMMIT_2",
        "FINALIZE",
        "MOVE_STORAGE",
    ]
    assert all(s["done_at"].endswith("Z") for s in doc["steps"])
    assert [p["piece_cid"] for p in doc["pieces"]][0] == sealed["pieces"][0]["piece_cid"]
    out = fleet.run("sectors", "status", "1").stdout
    assert "state       FINALIZED (generation 1)" in out and "MOVE_STORAGE" in out
    proc = fleet.run("sectors", "status", "77", check=False)
    assert proc.returncode == 1 and "sectorctl: NOT_FOUND: the manager has no lifecycle record" in proc.stderr


def test_jobs_sched_diag_and_abort(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    assert fleet.json("sealing", "jobs")["jobs"] == []
    delivered = fleet.json("sealing", "jobs", "--all")["jobs"]
    assert any(j["state"] == "JOB_STATE_DELIVERED" for j in delivered)
    assert "no jobs" in fleet.run("sealing", "jobs").stdout
    assert "delivered" in fleet.run("sealing", "jobs", "--all").stdout

    diag = fleet.json("sealing", "sched-diag", "--force-sched")
    assert diag["requests"] == [] and len(diag["workers"]) == 2
    out = fleet.run("sealing", "sched-diag").stdout
    assert "Queue: empty" in out and "Workers:" in out and "Awaiting return: none" in out

    proc = fleet.run("sealing", "abort", "no-such-call", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("sectorctl: NOT_FOUND: no live call no-such-call")


def test_a_queued_request_shows_in_sched_diag_and_jobs_and_aborts(fleet: CliFleet, sealed: dict[str, Any]) -> None:
    """Both workers cordoned: a seal's first AddPiece waits (worker unavailable) until aborted."""
    ids = [w["info"]["worker_id"] for w in fleet.json("sealing", "workers")["workers"]]
    f = fleet.tmp / "queued.bin"
    f.write_bytes(b"q" * 127)
    try:
        for wid in ids:
            fleet.run("worker", "cordon", wid)
        seal = subprocess.Popen(
            [SECTORCTL, "sectors", "seal", "--size", "2KiB", "--sector", "9", str(f)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=fleet.env,
        )
        deadline = time.monotonic() + 30
        while not (requests := fleet.json("sealing", "sched-diag")["requests"]):
            assert time.monotonic() < deadline and seal.poll() is None
            time.sleep(0.2)
        request = requests[0]
        assert request["task_type"] == "TASK_TYPE_ADD_PIECE" and request["reason"] == "WAIT_REASON_WORKER_UNAVAILABLE"
        assert {r["worker_id"] for r in request["rejections"]} == set(ids)
        out = fleet.run("sealing", "sched-diag").stdout
        call = request["call_id"]["id"]
        assert (
            f"{call}  1000/9  AP" in out
            and "worker-unavailable" in out
            and f"{call} not on {ids[0]}: worker-unavailable" in out
        )
        jobs = fleet.json("sealing", "jobs", "--sector", "9")["jobs"]
        assert [(j["call_id"]["id"], j["state"]) for j in jobs] == [(call, "JOB_STATE_QUEUED")]
        assert "queued" in fleet.run("sealing", "jobs").stdout

        assert (
            f"aborted call {call} (it was queued)"
            in fleet.run("sealing", "abort", call, "--reason", "test abort").stdout
        )
        out, err = seal.communicate(timeout=30)
        assert seal.returncode == 1 and err.startswith("sectorctl: ABORTED: "), err
        assert "AddPiece queued.bin" in out and "FAILED" in out
    finally:
        for wid in ids:
            fleet.run("worker", "uncordon", wid)


def test_workers_and_worker_controls(fleet: CliFleet) -> None:
    stats = fleet.json("sealing", "workers")["workers"]
    assert len(stats) == 2
    after = json.loads(fleet.run("sealing", "workers", "--json").stdout)["workers"]  # --json after the verb too
    assert [w["info"]["worker_id"] for w in after] == [w["info"]["worker_id"] for w in stats]
    wid = stats[0]["info"]["worker_id"]
    out = fleet.run("sealing", "workers").stdout
    assert f"Worker {wid}" in out and "CPU: [" in out and "RAM: [" in out and "enabled,connected" in out
    assert "running/caps: PC1 0/4" in out  # worker 1's cap (PC1_MAX_CONCURRENT), nothing running
    capped = next(w for w in stats if w["tasks"])["tasks"]  # one entry per sector size the cap covers
    assert {t["task_type"] for t in capped} == {"TASK_TYPE_PRE_COMMIT_1"} and {
        (t["running"], t["max_concurrent"]) for t in capped
    } == {(0, 4)}

    assert "cordoned" in fleet.run("worker", "cordon", wid).stdout
    state = next(w for w in fleet.json("sealing", "workers")["workers"] if w["info"]["worker_id"] == wid)["state"]
    assert state == {"enabled": True, "cordoned": True, "draining": False, "connected": True}
    assert fleet.json("worker", "uncordon", wid)["state"]["cordoned"] is False

    assert fleet.json("worker", "disable", wid)["state"]["enabled"] is False
    assert "disabled" in fleet.run("sealing", "workers", "--worker", wid).stdout
    assert fleet.json("worker", "enable", wid)["state"]["enabled"] is True

    drained = fleet.json("worker", "drain", wid, "--timeout", "5")
    assert drained["drained"] is True and drained["state"]["cordoned"] is True
    assert fleet.json("worker", "uncordon", wid)["state"]["cordoned"] is False

    proc = fleet.run("worker", "cordon", "no-such-worker", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("sectorctl: NOT_FOUND: ") and "no-such-worker" in proc.stderr


def test_storage_list_attach_redeclare_detach(fleet: CliFleet) -> None:
    before = fleet.json("storage", "list")["paths"]
    assert len(before) == 2 and all(p["health"]["healthy"] for p in before)
    out = fleet.run("storage", "list").stdout
    assert "weight 10; use: seal/store; healthy" in out and "[" in out and "url: " in out and "worker: " in out

    worker = fleet.workers[1].address
    extra = fleet.tmp / "extra"
    attached = fleet.json(
        "storage",
        "attach",
        "--init",
        "--store",
        "--weight",
        "5",
        "--max-storage",
        "1GiB",
        "--worker",
        worker,
        str(extra),
    )
    sid = attached["path"]["info"]["id"]
    assert attached["path"]["info"]["can_store"] is True and attached["path"]["info"]["can_seal"] is False
    listed = {p["info"]["id"]: p for p in fleet.json("storage", "list")["paths"]}
    assert listed[sid]["info"]["weight"] == "5" and listed[sid]["info"]["max_storage"] == str(1 << 30)
    assert "(max-storage)" in fleet.run("storage", "list").stdout

    redeclared = fleet.json("storage", "redeclare", "--worker", worker, str(extra), "--drop-missing")
    assert [p["storage_id"] for p in redeclared["paths"]] == [sid]
    assert "DECLARED" in fleet.run("storage", "redeclare", "--worker", worker).stdout

    assert f"detached {sid}" in fleet.run("storage", "detach", "--worker", worker, str(extra)).stdout
    assert sid not in {p["info"]["id"] for p in fleet.json("storage", "list")["paths"]}
    proc = fleet.run("storage", "detach", "--worker", worker, sid, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("sectorctl: NOT_FOUND: ")


def test_connection_and_auth_errors(fleet: CliFleet) -> None:
    env = {k: v for k, v in fleet.env.items() if k != "SECTORSTORAGE_MANAGER"}
    proc = fleet.run("sealing", "jobs", env=env, check=False)
    assert proc.returncode == 2 and "SECTORSTORAGE_MANAGER" in proc.stderr

    proc = fleet.run("--manager", "127.0.0.1:1", "sealing", "workers", check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("sectorctl: UNAVAILABLE: ")
    assert "hint: can't reach the manager at 127.0.0.1:1" in proc.stderr and "SECTORSTORAGE_MANAGER" in proc.stderr

    proc = fleet.run(
        "sealing",
        "jobs",
        env={**fleet.env, "SECTORSTORAGE_TLS_CLIENT_CERT_FILE": str(fleet.tmp / "none.pem")},
        check=False,
    )
    assert proc.returncode == 2 and "SECTORSTORAGE_TLS" in proc.stderr and "Traceback" not in proc.stderr

    proc = fleet.run("sealing", "workers", "--token", "not-a-token", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("sectorctl: UNAUTHENTICATED: ")

    read_only = fleet.run("auth", "create-token", "--perm", "read").stdout.strip()
    proc = fleet.run("--token", read_only, "worker", "cordon", "x", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("sectorctl: PERMISSION_DENIED: ")
    token_file = fleet.tmp / "token"
    token_file.write_text(read_only + "\n")
    assert fleet.json("--token-file", str(token_file), "sealing", "jobs")["jobs"] == []
    made = fleet.json("auth", "create-token", "--perm", "write")
    assert made["permission"] == "write" and made["fleet"] == "sectorstorage"
    assert abs(made["expires_at"] - time.time() - 30 * 24 * 3600) < 120  # 30 days by default
    assert fleet.json("auth", "create-token", "--perm", "read", "--ttl", "0")["expires_at"] is None
    other = fleet.run("auth", "create-token", "--perm", "admin", "--fleet", "elsewhere").stdout.strip()
    proc = fleet.run("--token", other, "sealing", "jobs", check=False)
    assert proc.returncode == 1 and "UNAUTHENTICATED: token is for another fleet" in proc.stderr


def test_wait_api_waits_for_the_index_too_and_says_what_it_waits_for(fleet: CliFleet) -> None:
    ready = fleet.json("wait-api", "--workers", "2")
    assert ready == {"ready": True, "workers_connected": 2, "index_checked": True}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    proc = fleet.run("--index", dead, "wait-api", "--timeout", "6", check=False)
    assert proc.returncode == 1 and time.monotonic() - started < 30
    assert re.search(
        rf"sectorctl: waiting \(\d+s of 6s\): the index at {re.escape(dead)} is unreachable", proc.stderr
    ), proc.stderr
    assert proc.stderr.rstrip().endswith(f"timed out after 6s: the index at {dead} is unreachable (UNAVAILABLE)"), (
        proc.stderr
    )


def test_worker_tasks_enable_disable_and_their_effect_on_placement(fleet: CliFleet) -> None:
    """Task types toggled at runtime through sectorctl change where the manager places work."""
    w1, w2 = (w.address for w in fleet.workers)
    assert "PC1" in fleet.json("worker", "tasks", "list", "--worker", w1)["task_types"]
    for address in (w1, w2):
        after = fleet.json("worker", "tasks", "disable", "AP", "--worker", address)["task_types"]
        assert "AP" not in after
    # No worker accepts AddPiece now: a seal waits (SchedDiag: no worker enables the type).
    f = fleet.tmp / "toggle.bin"
    f.write_bytes(b"t" * 500)
    proc = subprocess.Popen(
        [SECTORCTL, "--json", "sectors", "seal", "--size", "2KiB", "--sector", "501", str(f)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=fleet.env,
    )
    try:
        deadline = time.monotonic() + 30
        while not [
            r for r in fleet.json("sealing", "sched-diag")["requests"] if r["sector"]["id"].get("number") == "501"
        ]:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        out = fleet.run("worker", "tasks", "enable", "ap", "--worker", w2).stdout
        assert out.startswith(f"{w2} accepts: ") and " AP " in f" {out.split(': ', 1)[1].strip()} "
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    ran = {r["task_type"]: r["worker_id"] for r in fleet.json("sealing", "history", "--sector", "501")["runs"]}
    by_name = {w["info"]["name"]: w["info"]["worker_id"] for w in fleet.json("sealing", "workers")["workers"]}
    assert ran["TASK_TYPE_ADD_PIECE"] == by_name["cli-w2"]  # the only worker that took AP again
    fleet.run("worker", "tasks", "enable", "AP", "--worker", w1)
    proc2 = fleet.run("worker", "tasks", "enable", "--worker", w1, check=False)
    assert proc2.returncode == 2 and "needs at least one task type" in proc2.stderr
    proc3 = fleet.run("worker", "tasks", "disable", "XYZ", "--worker", w1, check=False)
    assert proc3.returncode == 2 and "unknown task type 'XYZ'" in proc3.stderr


def test_sectors_remove_needs_confirmation_then_ends_the_pipeline(fleet: CliFleet) -> None:
    f = fleet.tmp / "doomed.bin"
    f.write_bytes(b"d" * 700)
    fleet.json("sectors", "seal", "--size", "2KiB", "--sector", "601", str(f))
    proc = fleet.run("sectors", "remove", "601", check=False)
    assert proc.returncode == 2 and "--really-do-it" in proc.stderr
    assert fleet.json("sectors", "status", "601")["state"] == "FINALIZED"
    removed = fleet.json("sectors", "remove", "601", "--really-do-it")
    assert {r["type"] for r in removed["removed"]} >= {"SECTOR_FILE_TYPE_SEALED", "SECTOR_FILE_TYPE_CACHE"}
    assert fleet.json("sectors", "status", "601")["state"] == "REMOVED"
    assert fleet.json("storage", "find", "601")["locations"] == []


def test_worker_resources_shows_the_effective_table_and_the_default(fleet: CliFleet) -> None:
    """cli-w1 runs with PC1_MAX_CONCURRENT = 4: its PC1 rows say so and are marked changed."""
    by_name = {w["info"]["name"]: w["info"]["worker_id"] for w in fleet.json("sealing", "workers")["workers"]}
    doc = fleet.json("worker", "resources", by_name["cli-w1"])
    rows = {(r["task_type"], r["seal_proof"]): r for r in doc["resources"]}
    pc1 = rows[("TASK_TYPE_PRE_COMMIT_1", "REGISTERED_SEAL_PROOF_STACKED_DRG_32GIB_V1_1")]
    assert pc1["max_concurrent"] == 4 and pc1["overridden"] is True
    assert (
        rows[("TASK_TYPE_COMMIT_2", "REGISTERED_SEAL_PROOF_STACKED_DRG_32GIB_V1_1")].get("overridden", False) is False
    )
    default = {
        (r["task_type"], r["seal_proof"]): r
        for r in fleet.json("worker", "resources", by_name["cli-w1"], "--default")["resources"]
    }
    assert "max_concurrent" not in default[("TASK_TYPE_PRE_COMMIT_1", "REGISTERED_SEAL_PROOF_STACKED_DRG_32GIB_V1_1")]
    assert int(
        default[("TASK_TYPE_PRE_COMMIT_1", "REGISTERED_SEAL_PROOF_STACKED_DRG_32GIB_V1_1")]["min_memory"]
    ) == int(pc1["min_memory"])
    out = fleet.run("worker", "resources", by_name["cli-w1"]).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("PC1") and "32GiB" in ln)
    assert line.rstrip().endswith("*") and " 4 " in f" {line} "
    proc = fleet.run("worker", "resources", "nobody", check=False)
    assert proc.returncode == 1 and "NOT_FOUND" in proc.stderr
