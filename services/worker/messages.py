"""The message forms of the worker's shared domain values (sector ids, file types), for every
edge that speaks protobuf: convert.py (WorkerService), index_client.py, peers.py. The domain
modules (sectors.py and the rest of `[grpc_free]` in architecture.toml) never see a message;
this is the lowest layer of the edge, importing no other edge module, so each client can use it
without an import cycle through convert.py."""

from __future__ import annotations

from services.common.proto.sectorstorage.v1 import common_pb2
from services.worker.sectors import FileType, SectorId


def sector_id_msg(sector: SectorId) -> common_pb2.SectorId:
    return common_pb2.SectorId(miner=sector.miner, number=sector.number)


def sector_id_of(msg: common_pb2.SectorId) -> SectorId:
    """A SectorId from its message; ValueError when out of range."""
    return SectorId(msg.miner, msg.number)


def file_type_msg(file_type: FileType) -> common_pb2.SectorFileType.ValueType:
    """One file type's SectorFileType value (the enum's values are the FileType bits)."""
    return common_pb2.SectorFileType.ValueType(int(file_type))


def file_types_msg(types: FileType) -> list[common_pb2.SectorFileType.ValueType]:
    """A set of file types as a repeated SectorFileType, in the reference's order."""
    return [file_type_msg(t) for t in types.singles()]
