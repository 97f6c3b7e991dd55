"""The WorkerInfo a worker registers with, decoded at the edge (convert.worker_info) into what the
registry and the scheduler read; WorkerStats shows operators the message exactly as it was sent."""

from __future__ import annotations

from services.common.proto.sectorstorage.v1 import common_pb2
from services.common.resource_override import ResourceOverride
from services.manager import convert
from services.manager.accounting import Hardware
from services.manager.resources import SealProof
from services.manager.tasks import TaskType
from services.manager.workers import Gpu, WorkerHandle, hardware_of, table_of, task_types_of

INFO = common_pb2.WorkerInfo(
    worker_id="w-1",
    name="box",
    hostname="",
    resources=common_pb2.WorkerResources(
        mem_physical=64 << 30,
        mem_swap=1 << 30,
        mem_reserved=2 << 30,
        cpus=16,
        gpus=[common_pb2.GpuInfo(name="H100", ordinal=0, memory=80 << 30)],
    ),
    ignore_resources=True,
    task_types=[common_pb2.TaskType.ValueType(2), common_pb2.TaskType.ValueType(99)],
    paths=[
        common_pb2.StoragePath(info=common_pb2.StorageInfo(id="p1"), local_path="/a"),
        common_pb2.StoragePath(local_path="/no-id"),
    ],
    resource_overrides=[
        common_pb2.TaskResources(task_type=common_pb2.TaskType.ValueType(2), max_concurrent=3),
        common_pb2.TaskResources(
            task_type=common_pb2.TaskType.ValueType(2),
            seal_proof=common_pb2.RegisteredSealProof.ValueType(5),
            min_memory=0,
        ),
        common_pb2.TaskResources(task_type=common_pb2.TaskType.ValueType(99), max_concurrent=1),
    ],
    version="0.1.0",
    transfer_address="127.0.0.1:1",
)


def test_worker_info_decodes_what_the_manager_reads() -> None:
    info = convert.worker_info(INFO)
    assert hardware_of(info) == Hardware(64 << 30, 1 << 30, 2 << 30, 16, (0,), ignore_resources=True)
    assert info.gpus == (Gpu(0, "H100"),)
    # Unknown task types stay in the list as sent, but are never scheduled.
    assert info.task_types == (2, 99)
    assert task_types_of(info) == frozenset({TaskType.PRE_COMMIT_1})
    assert info.path_ids == ("p1",)
    # Optional fields: set (even to 0) is an override, unset is not; unknown task types are dropped.
    assert info.overrides == (
        ResourceOverride(TaskType.PRE_COMMIT_1, None, max_concurrent=3),
        ResourceOverride(TaskType.PRE_COMMIT_1, SealProof.STACKED_DRG_2KIB_V1_1, min_memory=0),
    )
    assert table_of(info).row((TaskType.PRE_COMMIT_1, SealProof.STACKED_DRG_2KIB_V1_1)).min_memory == 0
    handle = WorkerHandle("w-1", "s", "addr", info, 0.0, 0.0)
    assert handle.hostname == "box" and handle.path_ids == ["p1"]


def test_worker_info_message_comes_back_as_sent() -> None:
    assert convert.worker_info_msg(convert.worker_info(INFO)) == INFO
