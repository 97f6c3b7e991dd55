"""One real fleet per module for the dashboard tests (index, manager, two workers whose PC1 takes
a few seconds, so a running task can be seen), a third storage path filled to 90% of its
max_storage, and the dashboard process in front of it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common.proto.sectorstorage.v1 import worker_pb2
from services.devfleet import ServiceProcess
from tests.support.fleet import Fleet, WorkerSpec, make_fleet, service_group
from tests.support.web import Dashboard, start_dashboard

FULL_MAX = 10 << 20  # the nearly full path's max_storage
FULL_USED = 9 << 20  # bytes written into it: 90%
SLOW_PC1_S = 4.0


@dataclass
class WebFleet:
    fleet: Fleet
    dashboard: Dashboard
    full_path_id: str
    tmp: Path
    start: object


@pytest.fixture(scope="module")
def web_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebFleet]:
    tmp = tmp_path_factory.mktemp("web")
    group = service_group(tmp)
    lock = threading.Lock()

    def start(
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> ServiceProcess:
        with lock:
            label = f"{name}-{len(group.processes)}"
        return group.start(name, label, *args, env=env, data_dir=data_dir, wrapper=wrapper)

    try:
        fleet = make_fleet(start, tmp)
        slow = {"SECTORSTORAGE_TEST_FAULTS": "1", "SECTORSTORAGE_TEST_FAULT_TASK_DELAY": f"PC1={SLOW_PC1_S}"}
        for name in ("dash-w1", "dash-w2"):
            fleet.add_worker(WorkerSpec(name, cpus=4, env=slow))
        fleet.wait_registered()
        # A store-only path of dash-w2 at 90% of its max_storage.
        full = tmp / "full-store"
        full.mkdir()
        stub = fleet.worker_stub("dash-w2")
        reply = stub.StorageAttachLocal(
            worker_pb2.StorageAttachLocalRequest(
                path=str(full),
                init=worker_pb2.StoragePathConfig(can_seal=False, can_store=True, weight=1, max_storage=FULL_MAX),
            ),
            timeout=30,
        )
        (full / "filler.bin").write_bytes(b"\x5a" * FULL_USED)
        dashboard = start_dashboard(start, fleet.address, fleet.index.address, tmp / "dashboard")
        yield WebFleet(fleet, dashboard, reply.path.info.id, tmp, start)
    finally:
        group.close(timeout=10)
