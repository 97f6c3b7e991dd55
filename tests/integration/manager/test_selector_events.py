"""Queued work is placed when the event that makes room happens, not at the next periodic
selector refresh: with the default `selector_refresh_s` (10 s) and heartbeat interval (5 s), an
AddPiece queued while no worker has a storage path runs within a couple of seconds of the path
being attached (the worker beats at once when its advertised paths change, and the manager
resolves its queue again when they do)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc

from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import manager_pb2, worker_pb2
from tests.support.fleet import StartService, WorkerSpec, free_port, make_fleet
from tests.support.sectors import P2K, piece_data, sector


def test_queued_add_piece_runs_as_soon_as_a_path_is_attached(start_service: StartService, tmp_path: Path) -> None:
    defaults = {
        "SECTORSTORAGE_MANAGER_SELECTOR_REFRESH_S": "10",
        "SECTORSTORAGE_MANAGER_HEARTBEAT_INTERVAL_S": "5",
        "SECTORSTORAGE_MANAGER_HEARTBEAT_TIMEOUT_S": "30",
        "SECTORSTORAGE_MANAGER_SCHED_PASS_INTERVAL_S": "10",
    }
    fleet = make_fleet(start_service, tmp_path, defaults)
    fleet.specs["a"] = WorkerSpec("a", cpus=2)
    fleet.worker_ports["a"] = free_port()
    fleet.start_worker("a")
    deadline = time.monotonic() + 30
    while not any(
        s.state.connected for s in fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
    ):
        assert time.monotonic() < deadline, "worker did not register"
        time.sleep(0.1)
    time.sleep(5.5)  # the registration's own refresh has passed: only the attach can place it now

    done: dict[str, float] = {}
    errors: list[grpc.RpcError] = []

    def client() -> None:
        try:
            add_piece(fleet.stub(), sector(1), piece_data(1, P2K))
            done["at"] = time.monotonic()
        except grpc.RpcError as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(1.0)
    assert "at" not in done and not errors  # no path anywhere yet: it waits
    attached = time.monotonic()
    fleet.worker_stub("a").StorageAttachLocal(
        worker_pb2.StorageAttachLocalRequest(
            path=str(tmp_path / "store-a"), init=worker_pb2.StoragePathConfig(can_seal=True, can_store=True)
        ),
        timeout=30,
    )
    thread.join(30)
    assert not errors, errors
    took = done["at"] - attached
    print(f"AddPiece placed {took:.2f} s after the storage path was attached")
    assert took < 3.0
