"""A worker whose index or manager is down keeps retrying, and every retry's log line names the
dependency and its address (real processes; the dependency's address has nothing listening
until the test starts it)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.proto.sectorstorage.v1 import index_pb2
from services.common.readiness import READY_SERVICE
from services.devfleet import console_script
from services.worker.paths import PathMeta, StorageList, init_path
from tests.support.auth import token
from tests.support.fleet import StartService, free_port
from tests.support.worker import index_stub

FAST = {
    "SECTORSTORAGE_WORKER_STORAGE_HEARTBEAT_S": "0.5",
    "SECTORSTORAGE_WORKER_REGISTER_RETRY_INITIAL_S": "0.1",
    "SECTORSTORAGE_WORKER_REGISTER_RETRY_MAX_S": "0.4",
}


def health_of(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def warnings_of(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["level"] in ("warning", "error"):
                out.append(str(entry["msg"]))
    return out


def wait_for(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_worker_names_the_index_it_cannot_reach_on_every_retry(start_service: StartService, tmp_path: Path) -> None:
    index_address = f"127.0.0.1:{free_port()}"  # down until started below
    manager = start_service("manager", "--index", index_address)
    data = tmp_path / "worker"
    root = tmp_path / "store"
    storage_id = str(uuid.uuid4())
    init_path(root, PathMeta(id=storage_id, can_seal=True, can_store=True))
    StorageList(data / "storage.json").add(str(root))
    worker = start_service("worker", "--index", index_address, "--manager", manager.address, env=FAST, data_dir=data)

    expected = f"index {index_address} unavailable (UNAVAILABLE): storage heartbeat failed; retrying in 0.5 s"
    wait_for(lambda: warnings_of(worker.log()).count(expected) >= 3)
    # Every warning is that one: nothing blames the manager, which is up.
    not_ready = f"not ready: the index at {index_address} does not answer (UNAVAILABLE)"
    assert set(warnings_of(worker.log())) == {expected, not_ready}, warnings_of(worker.log())
    assert warnings_of(worker.log()).count(not_ready) == 1  # said when it changes, not every retry

    # Readiness says so too; liveness (the overall status) does not.
    assert health_of(worker.address, READY_SERVICE) == "NOT_SERVING" and health_of(worker.address) == "SERVING"
    wait_for(lambda: health_of(manager.address, READY_SERVICE) == "NOT_SERVING")
    assert health_of(manager.address) == "SERVING"
    assert f"not ready: the index at {index_address} does not answer (UNAVAILABLE)" in warnings_of(manager.log())

    # An operator attaching storage meanwhile is told that the worker cannot reach the index,
    # not that the worker is unreachable.
    env = {
        **os.environ,
        "SECTORSTORAGE_TOKEN": token(),
        "SECTORSTORAGE_INDEX": index_address,
        "SECTORSTORAGE_MANAGER": manager.address,
    }
    proc = subprocess.run(
        [
            console_script("sectorctl"),
            "storage",
            "attach",
            "--init",
            "--seal",
            "--worker",
            worker.address,
            str(tmp_path / "more"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert f"this worker cannot reach the index at {index_address} (UNAVAILABLE)" in proc.stderr, proc.stderr
    assert "can't reach the worker" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

    # The index comes up on that address: the path is attached and nothing more is logged.
    index = start_service("index", "--listen", index_address)
    wait_for(
        lambda: any(
            p.info.id == storage_id
            for p in index_stub(index).StorageList(index_pb2.StorageListRequest(), timeout=5).paths
        )
    )
    wait_for(
        lambda: (
            health_of(worker.address, READY_SERVICE) == "SERVING"
            and health_of(manager.address, READY_SERVICE) == "SERVING"
        )
    )


def test_worker_names_the_manager_it_cannot_reach_on_every_retry(start_service: StartService) -> None:
    manager_address = f"127.0.0.1:{free_port()}"
    index = start_service("index")
    worker = start_service("worker", "--index", index.address, "--manager", manager_address, env=FAST)
    prefix = f"manager {manager_address} unavailable (UNAVAILABLE): manager registration failed; retrying in "
    wait_for(lambda: sum(m.startswith(prefix) for m in warnings_of(worker.log())) >= 3)
    not_ready = f"not ready: the manager at {manager_address} does not answer (UNAVAILABLE)"
    assert all(m.startswith(prefix) or m == not_ready for m in warnings_of(worker.log())), warnings_of(worker.log())
    assert warnings_of(worker.log()).count(not_ready) == 1
