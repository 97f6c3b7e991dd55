"""The protos are the contract: generated code must match them, and every RPC must declare the
permission it needs (the auth interceptor reads it from there)."""

import subprocess
import sys

import pytest
from google.protobuf.descriptor import ServiceDescriptor

from services.common.auth import Permission, method_permissions
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, manager_pb2, worker_pb2
from tests.support.paths import REPO

SERVICES: list[ServiceDescriptor] = [
    index_pb2.DESCRIPTOR.services_by_name["IndexService"],
    manager_pb2.DESCRIPTOR.services_by_name["ManagerService"],
    worker_pb2.DESCRIPTOR.services_by_name["WorkerService"],
]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_rpc_declares_permission(service: ServiceDescriptor) -> None:
    missing = [m.name for m in service.methods if not m.GetOptions().Extensions[common_pb2.required_permission]]
    assert not missing, f"{service.name} methods without required_permission: {missing}"


def test_permission_table() -> None:
    table = method_permissions(SERVICES)
    assert table["/sectorstorage.v1.IndexService/StorageFindSector"] is Permission.READ
    assert table["/sectorstorage.v1.IndexService/StorageDeclareSector"] is Permission.WRITE
    assert table["/sectorstorage.v1.ManagerService/DisableWorker"] is Permission.ADMIN
    assert {p.value for p in Permission} == {v.number for v in common_pb2.Permission.DESCRIPTOR.values if v.number}


def test_enums_start_unspecified() -> None:
    for module in (common_pb2, index_pb2, manager_pb2, worker_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            zero = enum.values_by_number.get(0)
            assert zero is not None and zero.name.endswith("_UNSPECIFIED"), enum.full_name
