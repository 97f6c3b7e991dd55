"""The fleet's one vocabulary (services/common/vocabulary.py) against the protos and rust_core:
the enums mirror the wire values, the sector sizes are rust_core's, every service parses task
types with the same function, and the prover id is Filecoin's."""

from __future__ import annotations

import pytest

import rust_core
from services.cli import names
from services.common.proto.sectorstorage.v1 import common_pb2
from services.common.vocabulary import TASK_SPECS, SealProof, TaskType, parse_task_type, prover_id
from services.manager import tasks as manager_tasks
from services.worker import resources as worker_resources
from services.worker.sectors import SEAL_PROOF_SIZES


def test_enums_mirror_the_protos() -> None:
    for tt in TaskType:
        assert common_pb2.TaskType.Name(int(tt)) == f"TASK_TYPE_{tt.name}"
    for proof in SealProof:
        assert common_pb2.RegisteredSealProof.Name(int(proof)) == f"REGISTERED_SEAL_PROOF_{proof.name}"
    assert set(TASK_SPECS) == set(TaskType)


def test_sector_sizes_are_rust_cores() -> None:
    assert sorted(p.sector_size for p in SealProof) == sorted(rust_core.supported_sector_sizes())
    assert SEAL_PROOF_SIZES == {int(p): p.sector_size for p in SealProof}


@pytest.mark.parametrize(
    "text", ["PC1", "pc1", "PRE_COMMIT_1", "TASK_TYPE_PRE_COMMIT_1", "pre_commit_1", "2", "seal/v0/precommit/1"]
)
def test_every_service_parses_task_types_alike(text: str) -> None:
    assert parse_task_type(text) is TaskType.PRE_COMMIT_1
    assert manager_tasks.parse_task_type(text) is TaskType.PRE_COMMIT_1
    assert worker_resources.parse_task_type(text) == 2
    assert names.parse_task_type(text) == 2


def test_unknown_task_types_are_refused_everywhere() -> None:
    for parse in (
        parse_task_type,
        manager_tasks.parse_task_type,
        worker_resources.parse_task_type,
        names.parse_task_type,
    ):
        with pytest.raises(ValueError, match="unknown task type 'PC3'"):
            parse("PC3")


def test_prover_id_is_the_id_address_payload() -> None:
    assert prover_id(1000) == bytes([0xE8, 0x07]).ljust(32, b"\0")
    assert prover_id(0) == bytes(32)
    assert prover_id(2**63 - 1)[:9] == bytes([0xFF] * 8 + [0x7F])
    with pytest.raises(ValueError):
        prover_id(-1)


def test_call_types_and_task_error_codes_are_the_wire_enums() -> None:
    from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
    from services.common.vocabulary import CallType, TaskErrorCode

    assert {f"CALL_TYPE_{c.name}": int(c) for c in CallType} == dict(worker_pb2.CallType.items())
    assert {c.wire_name: int(c) for c in TaskErrorCode} == dict(common_pb2.TaskErrorCode.items())
    # What the manager retries: the worker's moment, never the request's.
    assert {c for c in TaskErrorCode if c.temporary} == {
        TaskErrorCode.TEMPORARY,
        TaskErrorCode.WORKER_RESTARTED,
        TaskErrorCode.ALLOCATE_SPACE,
        TaskErrorCode.TIMED_OUT,
    }
