"""The index service process: the IndexService servicer on the common bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.proto.sectorstorage.v1 import index_pb2, index_pb2_grpc
from services.common.server import Registration, Service, registration
from services.index.config import IndexConfig


class IndexServicer(index_pb2_grpc.IndexServiceServicer):
    """RPCs not implemented yet answer UNIMPLEMENTED (the generated base class's behaviour)."""


class IndexApp(Service):
    name = "index"

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        # Unimplemented RPCs are filled in by registration(), so the class is complete at run time.
        self.servicer = IndexServicer()  # type: ignore[abstract]

    def registrations(self) -> Sequence[Registration]:
        return [registration(index_pb2, index_pb2_grpc, "IndexService", self.servicer)]
