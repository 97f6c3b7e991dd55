"""Two index processes on one PostgreSQL database, 32 client threads declaring, dropping,
attaching and locking at once through both: the final state is exactly what was acknowledged,
no URL merge is lost, and a write lock is never held twice."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from services.common.proto.sectorstorage.v1 import index_pb2_grpc
from tests.support.index import CACHE, SEALED, UNSEALED, Index, all_declarations, attach, info, sector, stat

MakeIndex = Callable[..., Index]
THREADS = 32
OPS_PER_THREAD = 60
HOT_SECTORS = [900_001, 900_002, 900_003]
TYPES = [UNSEALED, SEALED, CACHE]


class Occupancy:
    """What the test believes is held: readers and writers per (sector, type)."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.readers: dict[tuple[int, int], int] = {}
        self.writers: dict[tuple[int, int], int] = {}
        self.violations: list[str] = []
        self.grants = 0

    def enter(self, number: int, read: list[int], write: list[int]) -> None:
        with self.guard:
            self.grants += 1
            for t in write:
                if self.writers.get((number, t)) or self.readers.get((number, t)):
                    self.violations.append(f"write {number}/{t} granted while held")
                self.writers[(number, t)] = self.writers.get((number, t), 0) + 1
            for t in read:
                if self.writers.get((number, t)):
                    self.violations.append(f"read {number}/{t} granted while written")
                self.readers[(number, t)] = self.readers.get((number, t), 0) + 1

    def leave(self, number: int, read: list[int], write: list[int]) -> None:
        with self.guard:
            for t in write:
                self.writers[(number, t)] -= 1
            for t in read:
                self.readers[(number, t)] -= 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_two_replicas_32_threads_exact_state_and_exclusive_locks(
    make_index: MakeIndex, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL: two replicas on one database. SQLite: two processes on one file (as when
    several index processes share one port on a host)."""
    if backend == "postgres":
        url, shared_dir = request.getfixturevalue("postgres").new_database(), None
    else:
        url, shared_dir = "", tmp_path / "shared"
    with ThreadPoolExecutor(2) as starter:  # both migrate the same empty database at once
        replicas = list(starter.map(lambda _: make_index(backend, db_url=url, data_dir=shared_dir), range(2)))
    stubs = [r.stub() for r in replicas]
    shared = info(urls=["10.1.0.0:1"])
    stubs[0].StorageAttach(ipb.StorageAttachRequest(info=shared, stat=stat()), timeout=10)
    other = attach(stubs[1])
    paths = [shared.id, other]

    model: dict[tuple[str, int, int], bool] = {}  # (path, number, type) -> primary
    model_guard = threading.Lock()
    occupancy = Occupancy()
    errors: list[str] = []

    def client(t: int) -> None:
        rng = random.Random(t)
        own = [t * 1000 + k for k in range(8)]
        local: dict[tuple[str, int, int], bool] = {}
        stub_of = lambda: stubs[rng.randrange(2)]  # noqa: E731 - each call through a random replica
        try:
            extra = info(shared.id, urls=[f"10.1.0.{t + 1}:1"], weight=10)
            stub_of().StorageAttach(ipb.StorageAttachRequest(info=extra, stat=stat()), timeout=30)
            for _ in range(OPS_PER_THREAD):
                op = rng.random()
                path, number = rng.choice(paths), rng.choice(own)
                types = rng.sample(TYPES, rng.randint(1, 3))
                if op < 0.45:
                    primary = rng.random() < 0.3
                    stub_of().StorageDeclareSector(
                        ipb.StorageDeclareSectorRequest(
                            storage_id=path, sector=sector(number), types=types, primary=primary
                        ),
                        timeout=30,
                    )
                    for ft in types:
                        local[(path, number, ft)] = local.get((path, number, ft), False) or primary
                elif op < 0.7:
                    stub_of().StorageDropSector(
                        ipb.StorageDropSectorRequest(storage_id=path, sector=sector(number), types=types), timeout=30
                    )
                    for ft in types:
                        local.pop((path, number, ft), None)
                else:
                    lock_hot(rng, stub_of(), t)
        except grpc.RpcError as err:
            errors.append(f"thread {t}: {err.code()} {err.details()}")
        with model_guard:
            model.update(local)

    def lock_hot(rng: random.Random, stub: index_pb2_grpc.IndexServiceStub, t: int) -> None:
        number = rng.choice(HOT_SECTORS)
        write = rng.sample(TYPES, rng.randint(0, 2))
        read = [x for x in rng.sample(TYPES, rng.randint(0 if write else 1, 2)) if x not in write]
        owner = f"client-{t}"
        if rng.random() < 0.5:
            got = stub.StorageTryLock(
                ipb.StorageTryLockRequest(
                    sector=sector(number), read_types=read, write_types=write, owner=owner, ttl=Duration(seconds=60)
                ),
                timeout=30,
            )
            if not got.acquired:
                return
            lease_id = got.lease.lease_id
        else:
            messages = list(
                stub.StorageLock(
                    ipb.StorageLockRequest(
                        sector=sector(number), read_types=read, write_types=write, owner=owner, ttl=Duration(seconds=60)
                    ),
                    timeout=60,
                )
            )
            lease_id = messages[-1].acquired.lease_id
        occupancy.enter(number, read, write)
        time.sleep(rng.uniform(0, 0.01))
        occupancy.leave(number, read, write)
        assert stubs[rng.randrange(2)].StorageUnlock(ipb.StorageUnlockRequest(lease_id=lease_id), timeout=30).released

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(client, range(THREADS)))

    assert errors == []
    assert occupancy.violations == []
    assert occupancy.grants > 100
    expected = sorted((path, 1000, number, ft, primary) for (path, number, ft), primary in model.items())
    for stub in stubs:  # both replicas see exactly what was acknowledged
        assert sorted(all_declarations(stub)) == expected
        assert stub.StorageGetLocks(ipb.StorageGetLocksRequest(), timeout=10).locks == []
    urls = stubs[1].StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=shared.id), timeout=10).info.urls
    assert sorted(urls) == sorted(f"10.1.0.{i}:1" for i in range(THREADS + 1))  # no merge lost


def test_unlock_on_one_replica_wakes_a_waiter_on_another(make_index: MakeIndex, postgres: object) -> None:
    """Waiters poll only every 30 s here: a prompt grant proves PostgreSQL NOTIFY woke it."""
    dsn = postgres.new_database()  # type: ignore[attr-defined]
    env = {"SECTORSTORAGE_INDEX_LOCK_RETRY_MAX_S": "30"}
    a = make_index("postgres", db_url=dsn, env=env).stub()
    b = make_index("postgres", db_url=dsn, env=env).stub()
    held = b.StorageTryLock(
        ipb.StorageTryLockRequest(sector=sector(42), write_types=[SEALED], owner="on-b"), timeout=10
    )
    assert held.acquired
    call = a.StorageLock(ipb.StorageLockRequest(sector=sector(42), write_types=[SEALED], owner="on-a"), timeout=60)
    assert next(call).WhichOneof("state") == "waiting"
    released_at = time.monotonic()
    assert b.StorageUnlock(ipb.StorageUnlockRequest(lease_id=held.lease.lease_id), timeout=10).released
    granted = next(call)
    assert granted.WhichOneof("state") == "acquired" and time.monotonic() - released_at < 5
