"""Bad input against live services (issue #8): every RPC of every service, found through the
descriptors, called with random requests built from its input message (proto_strategies.py):
client streams of random, empty and truncated (stalled) sequences, server streams read to the
end or cancelled after the first message, each with a short deadline.

Per example: the call ends with a gRPC status that is not a crash (UNKNOWN/INTERNAL/DATA_LOSS),
no service logged an unhandled exception, and all three still answer health SERVING. At the end
the state from before the fuzzing is intact: the sector sealed first is unchanged on disk, still
verifies and reads back; the index still holds its path and declarations; nothing was created
outside the fleet's directories.

Examples per RPC: FUZZ_EXAMPLES (derandomized, so CI sees the same inputs each run); set
SECTORSTORAGE_FUZZ_EXAMPLES for a longer run. Figures are in docs/reliability.md.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cli.sealing import read_piece
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, manager_pb2, worker_pb2
from tests.reliability.live import LiveFleet, crashes, digest, start_fleet
from tests.reliability.proto_strategies import messages
from tests.reliability.rpcs import CRASH_CODES, Rpc, all_rpcs, invoke
from tests.support.sectors import SEED, TICKET

FUZZ_EXAMPLES = int(os.environ.get("SECTORSTORAGE_FUZZ_EXAMPLES", "16"))
CALL_TIMEOUT_S = 1.0
ST = common_pb2.SectorFileType
# Files outside the fleet that a path-traversal bug would create or change.
SENTINELS = [
    Path("/tmp/etc"),
    Path("/sectorstore.json"),
    Path("/etc/sectorstore.json"),
    Path("/sealed"),
    Path("/tmp/sealed"),
]
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFleet]:
    root = tmp_path_factory.mktemp("fuzz")
    before = {p: p.exists() for p in SENTINELS}
    passwd = digest(Path("/etc/passwd"))
    siblings = set(os.listdir(root.parent))
    repo_files = set(os.listdir(Path.cwd()))
    started = time.monotonic()
    fleet = start_fleet(root, seal=True)
    paths_before = _index_paths(fleet)
    task_types = list(fleet.worker_stub().TaskTypes(worker_pb2.TaskTypesRequest(), timeout=10).task_types)
    try:
        yield fleet
        _check_state(fleet, paths_before, task_types)
    finally:
        fleet.stop()
        print(
            f"\nfuzz tally: {TALLY['calls']} calls in {time.monotonic() - started:.1f} s; "
            + ", ".join(f"{k}={v}" for k, v in sorted(TALLY.items()) if k != "calls")
        )
    assert {p: p.exists() for p in SENTINELS} == before, "a file was created outside the fleet's directories"
    assert digest(Path("/etc/passwd")) == passwd
    assert set(os.listdir(root.parent)) - siblings <= {root.name}
    assert set(os.listdir(Path.cwd())) == repo_files, "a file was created in the services' working directory"


def _index_paths(fleet: LiveFleet) -> dict[str, list[int]]:
    """Storage id -> declared file counts per type, for the paths the index lists."""
    reply = fleet.index_stub().StorageList(index_pb2.StorageListRequest(), timeout=10)
    return {e.info.id: sorted((c.type, c.count) for c in e.file_counts) for e in reply.paths}  # type: ignore[misc]


def _check_state(fleet: LiveFleet, paths_before: dict[str, list[int]], task_types: list[int]) -> None:
    """What existed before the fuzzing is still there and still right."""
    assert fleet.sealed is not None
    assert all(fleet.alive().values()), fleet.alive()
    for name, proc in fleet.processes.items():
        found = crashes(proc.output)
        assert not found, f"{name} logged {len(found)} unhandled exceptions, the first: {found[0][-1500:]}"
    # The index still lists every path with the same declarations (paths a fuzzed StorageAttach
    # legitimately added may come on top).
    after = _index_paths(fleet)
    assert {k: after.get(k) for k in paths_before} == paths_before
    assert len(set(after) - set(paths_before)) <= TALLY["index.StorageAttach:OK"]
    ref = fleet.sealed.ref
    found = fleet.index_stub().StorageFindSector(
        index_pb2.StorageFindSectorRequest(sector=ref.id, types=[ST.SECTOR_FILE_TYPE_SEALED]), timeout=10
    )
    assert fleet.storage_id in {loc.id for loc in found.locations}
    # The sealed sector is unchanged, its proof still verifies, and the piece reads back.
    assert digest(fleet.sealed_file()) == fleet.sealed_digest
    comm = fleet.sealed.commitments
    verdict = fleet.manager_stub().VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=ref, comm_r=comm.comm_r, comm_d=comm.comm_d, ticket=TICKET, seed=SEED, proof=fleet.sealed.proof
        ),
        timeout=30,
    )
    assert verdict.valid, verdict.reason
    # The piece reads back through the manager (unsealing the finalized sector on the worker).
    # Task types a fuzzed DisableTaskType legitimately switched off are switched back on first.
    fleet.worker_stub().EnableTaskType(worker_pb2.EnableTaskTypeRequest(task_types=task_types), timeout=10)
    data, did_unseal = read_piece(fleet.manager_stub(), ref, 0, len(fleet.data), TICKET, comm.unsealed_cid)
    assert data == fleet.data and did_unseal


def _confine(rpc: Rpc, request: Message, sandbox: Path) -> Message:
    """StorageAttachLocal's contract is to create a storage directory at an absolute path the
    admin names; as this test runs as whatever user runs the suite, an absolute path is moved
    under the fleet's sandbox (relative and '..' paths are sent as they are: they must be
    refused)."""
    if rpc.id == "worker.StorageAttachLocal":
        assert isinstance(request, worker_pb2.StorageAttachLocalRequest)
        if request.path.startswith("/") and "\x00" not in request.path:
            request.path = str(sandbox) + request.path
    return request


RPCS = all_rpcs()


def test_every_rpc_is_fuzzed() -> None:
    """The descriptor walk finds every RPC of the three services (none silently skipped)."""
    assert len(RPCS) == sum(
        len(m.DESCRIPTOR.services_by_name[s].methods)
        for m, s in ((index_pb2, "IndexService"), (manager_pb2, "ManagerService"), (worker_pb2, "WorkerService"))
    )
    assert len(RPCS) >= 80


@pytest.mark.parametrize("rpc", RPCS, ids=[r.id for r in RPCS])
def test_fuzz_rpc(fleet: LiveFleet, rpc: Rpc) -> None:
    sandbox = fleet.root / "attach-sandbox"
    channel = fleet.channel(rpc.service)
    request_messages = messages(rpc.method.input_type)
    m = rpc.method
    seen = {name: len(p.output) for name, p in fleet.processes.items()}

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        if m.client_streaming:
            requests = data.draw(st.lists(request_messages, max_size=4), label="stream")
            stall = data.draw(st.booleans(), label="stall")
        else:
            requests = [data.draw(request_messages, label="request")]
            stall = False
        cancel = m.server_streaming and data.draw(st.booleans(), label="cancel_after_first")
        requests = [_confine(rpc, r, sandbox) for r in requests]
        started = time.monotonic()
        outcome = invoke(channel, rpc, requests, timeout=CALL_TIMEOUT_S, stall=stall, cancel_after_first=cancel)
        TALLY["calls"] += 1
        TALLY[outcome.code.name] += 1
        if outcome.code in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
            TALLY[f"{rpc.id}:{outcome.code.name}"] += 1
        assert outcome.code not in CRASH_CODES, f"{rpc.id} crashed: {outcome.code.name}: {outcome.details}"
        assert time.monotonic() - started < CALL_TIMEOUT_S + 5, f"{rpc.id} ignored its deadline"
        for name, proc in fleet.processes.items():
            new = crashes(proc.output[seen[name] :])
            assert not new, f"{name} logged an unhandled exception during {rpc.id}: {new[0][-1500:]}"
        alive = fleet.alive()
        assert all(alive.values()), f"after {rpc.id}: {alive}"

    one()
