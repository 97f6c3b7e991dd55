"""PC1 batches through the whole fleet (issue 20): an index, a manager and a worker with
`pc1_batch_size = 2`, two 8 MiB sectors sealed at once by clients of the manager. The manager
places and tracks each PC1 as usual; the worker runs the two as ONE rust_core batch (its log
names both calls, which are the manager's PC1 calls of the two sectors), each call's result
comes back through its own Return, and both sectors go on through PC2, C1, C2 (VerifySeal) and
Finalize."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.support.fleet import Fleet, WorkerSpec, fleet  # noqa: F401
from tests.support.sealing import seal_sector
from tests.support.sectors import P8M, sector

pytestmark = pytest.mark.slow


def test_two_sectors_sealed_through_the_manager_share_one_pc1_batch(fleet: Fleet) -> None:  # noqa: F811
    fleet.add_worker(
        WorkerSpec(
            "batcher",
            cpus=4,
            env={"SECTORSTORAGE_WORKER_PC1_BATCH_SIZE": "2", "SECTORSTORAGE_WORKER_PC1_BATCH_WAIT_MS": "60000"},
        )
    )
    fleet.wait_registered()
    refs = [sector(n, P8M) for n in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda r: seal_sector(fleet, r), refs))

    pc1_runs = fleet.history(task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1)
    assert sorted(r.sector.id.number for r in pc1_runs) == [1, 2]
    assert all(r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED for r in pc1_runs)
    pc1_calls = sorted(f"call:{r.call_id.sector.miner}-{r.call_id.sector.number}-{r.call_id.id}" for r in pc1_runs)
    batches = [entry for _, entry in fleet.worker_log_events("pc1 batch done")]
    assert len(batches) == 1, batches
    assert batches[0]["sectors"] == 2 and sorted(batches[0]["calls"]) == pc1_calls
    assert not fleet.worker_log_events("task failed")
