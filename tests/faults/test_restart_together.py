"""The manager and the index restarted at the same moment: a worker that re-registers with the new
manager announces its storage to the index again after a manager restart, and the index is
still down then. That must neither fail the registration nor end the worker's link to the
manager (it did: the worker served on but never registered again, and the sector it held
could not go on). Real processes over real sockets."""

from __future__ import annotations

import time

from services.common.proto.sectorstorage.v1 import manager_pb2
from tests.faults.helpers import read_back, seal
from tests.support.fleet import Fleet, WorkerSpec
from tests.support.sectors import P2K, piece_data, sector


def connected(fleet: Fleet) -> set[str]:
    try:
        stats = fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=5).workers
    except Exception:  # noqa: BLE001 - the manager is starting
        return set()
    return {s.info.worker_id for s in stats if s.state.connected and s.info.paths}


def test_a_manager_restarted_while_the_index_is_down_gets_its_workers_back(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=2))
    fleet.wait_registered()
    first = seal(fleet, sector(1, P2K), piece_data(1, P2K))

    fleet.index.kill()
    fleet.manager.kill()
    fleet.start_manager()  # the worker registers again and finds the manager restarted
    deadline = time.monotonic() + 30
    while fleet.worker_ids["a"] not in connected(fleet):
        assert time.monotonic() < deadline, "the worker did not register with the restarted manager"
        time.sleep(0.2)
    time.sleep(4.0)  # past the manager's heartbeat timeout (3 s here), the index still down
    assert fleet.worker_ids["a"] in connected(fleet), "the worker stopped heartbeating"
    log = fleet.workers["a"].log()
    assert "could not announce the storage paths again after the manager restarted" in log

    fleet.start_index()
    # The worker is still linked, its paths reach the index again, and the fleet works: the
    # earlier sector reads back and a new one seals.
    assert read_back(fleet, first) == first.data
    second = seal(fleet, sector(2, P2K), piece_data(2, P2K))
    assert second.verified and read_back(fleet, second) == second.data
    assert "the session with the manager failed" not in fleet.workers["a"].log()
