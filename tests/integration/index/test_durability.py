"""Everything the index acknowledged survives `kill -9` of the index process: paths, 10,000
declared sectors, health and locks are all there when it starts again on the same database."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from tests.integration.index.conftest import BACKENDS
from tests.support.index import (
    CACHE,
    SEALED,
    UNSEALED,
    Index,
    all_declarations,
    attach,
    declare_many,
    find,
    sector,
)

MakeIndex = Callable[..., Index]
SECTORS = 10_000


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_loses_nothing(make_index: MakeIndex, backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp(f"durable-{backend}")
    first = make_index(backend, data_dir=data_dir)
    stub = first.stub()
    paths = [attach(stub, urls=[f"10.0.0.{i}:3456"], weight=10 + i) for i in range(3)]
    expected: set[tuple[str, int, int, int, bool]] = set()
    plan = []
    rng = random.Random(4)
    for number in range(SECTORS):
        path = paths[number % 3]
        types = [UNSEALED, SEALED, CACHE][: 1 + number % 3]
        primary = rng.random() < 0.5
        plan.append((path, number, types, primary))
        expected |= {(path, 1000, number, t, primary) for t in types}

    declare_many(first.address, plan)
    lease = stub.StorageTryLock(
        ipb.StorageTryLockRequest(sector=sector(1), write_types=[SEALED], owner="survivor"), timeout=10
    ).lease
    info_before = {p.info.id: p for p in stub.StorageList(ipb.StorageListRequest(), timeout=30).paths}

    first.proc.kill()  # SIGKILL: no drain, no clean close of the database
    second = make_index(backend, data_dir=data_dir, db_url=first.db_url)
    again = second.stub()
    assert set(all_declarations(again)) == expected
    listed = again.StorageList(ipb.StorageListRequest(), timeout=30).paths
    assert {p.info.id: p.info for p in listed} == {k: v.info for k, v in info_before.items()}
    assert sum(c.count for p in listed for c in p.file_counts) == len(expected)
    assert all(p.health.healthy for p in listed)
    [loc] = find(again, 9_998, [UNSEALED, SEALED, CACHE])
    assert loc.id == paths[9_998 % 3] and loc.weight == (10 + 9_998 % 3) * 3
    [held] = again.StorageGetLocks(ipb.StorageGetLocksRequest(), timeout=10).locks
    assert held.lease_id == lease.lease_id and held.owner == "survivor"
