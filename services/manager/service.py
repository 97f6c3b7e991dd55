"""The manager service process: the ManagerService servicer on the common bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.proto.sectorstorage.v1 import manager_pb2, manager_pb2_grpc
from services.common.server import Registration, Service, registration
from services.manager.config import ManagerConfig


class ManagerServicer(manager_pb2_grpc.ManagerServiceServicer):
    """RPCs not implemented yet answer UNIMPLEMENTED (the generated base class's behaviour)."""


class ManagerApp(Service):
    name = "manager"

    def __init__(self, config: ManagerConfig) -> None:
        self.config = config
        # Unimplemented RPCs are filled in by registration(), so the class is complete at run time.
        self.servicer = ManagerServicer()  # type: ignore[abstract]

    def registrations(self) -> Sequence[Registration]:
        return [registration(manager_pb2, manager_pb2_grpc, "ManagerService", self.servicer)]
