"""Fleet operations (issue 9) with real processes: an index, a manager and workers talking gRPC.

- assigners: a batch of AddPiece on two idle identical workers lands round-robin under
  `spread`, and on the least loaded (the same idle worker each time) under `utilization`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.cli.local_fleet import ServiceProcess
from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import common_pb2
from tests.integration.test_manager_e2e import P2K, Fleet, WorkerSpec, free_port, piece_data, sector

StartService = Callable[..., ServiceProcess]


def make_fleet(start_service: StartService, tmp: Path, manager_env: dict[str, str], workers: list[WorkerSpec]) -> Fleet:
    """An index, a manager with extra environment, and registered workers."""
    index = start_service("index", data_dir=tmp / "index")
    fleet = Fleet(start_service, tmp, index, None, free_port(), manager_env=manager_env)  # type: ignore[arg-type]
    fleet.start_manager()
    for spec in workers:
        fleet.add_worker(spec)
    fleet.wait_registered()
    return fleet


@pytest.mark.parametrize("assigner", ["spread", "utilization"])
def test_assigner_placement_of_a_batch(start_service: StartService, tmp_path: Path, assigner: str) -> None:
    fleet = make_fleet(
        start_service, tmp_path, {"SECTORSTORAGE_MANAGER_ASSIGNER": assigner}, [WorkerSpec("a", cpus=2), WorkerSpec("b", cpus=2)]
    )
    for n in range(1, 9):  # one after the other: both workers are idle at every placement
        add_piece(fleet.stub(), sector(n), piece_data(n, P2K))
    runs = sorted(fleet.history(task_type=common_pb2.TASK_TYPE_ADD_PIECE), key=lambda r: r.sector.id.number)
    placed = [fleet.name_of(r.worker_id) for r in runs]
    assert len(placed) == 8
    if assigner == "spread":
        # Round-robin: never the same worker twice in a row, four each.
        assert all(x != y for x, y in zip(placed, placed[1:])), placed
        assert placed.count("a") == placed.count("b") == 4
    else:
        # Least loaded first; equal loads (both idle) go to the same worker every time.
        assert len(set(placed)) == 1, placed
