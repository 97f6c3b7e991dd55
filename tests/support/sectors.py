"""Sectors the tests seal and the values that go with them: the miner, proof types and sizes,
chain randomness, piece data and call ids, so every test names a sector the same way."""

from __future__ import annotations

import hashlib
import uuid

from services.common.proto.sectorstorage.v1 import common_pb2

MINER = 1000
P2K = common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1
P8M = common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1
P512M = common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1
# Sector size by proof type, and proof type by sector size.
SIZE: dict[int, int] = {P2K: 2048, P8M: 8 << 20}
PROOF: dict[int, int] = {2048: P2K, 8 << 20: P8M, 512 << 20: P512M}
# Tickets and seeds are chain randomness in a real deployment; 32 bytes in the BLS12-381 field.
TICKET = hashlib.sha256(b"ticket").digest()[:31] + b"\x00"
SEED = hashlib.sha256(b"seed").digest()[:31] + b"\x00"


def sector(number: int, proof: int = P2K) -> common_pb2.SectorRef:
    """Sector `number` of the test miner, by proof type."""
    return common_pb2.SectorRef(id=common_pb2.SectorId(miner=MINER, number=number), proof_type=proof)  # type: ignore[arg-type]


def sector_ref(number: int, size: int) -> common_pb2.SectorRef:
    """Sector `number` of the test miner, by sector size in bytes."""
    return sector(number, PROOF[size])


def piece_data(number: int, proof: int) -> bytes:
    """Deterministic data filling sector `number` of this proof type (unpadded size)."""
    size = SIZE[proof] // 128 * 127
    block = bytes((number * 7 + i) % 256 for i in range(4064))
    return (block * (size // len(block) + 1))[:size]


def new_call(number: int) -> common_pb2.CallId:
    """A fresh call id for sector `number` (what the manager sends with each task)."""
    return common_pb2.CallId(sector=common_pb2.SectorId(miner=MINER, number=number), id=str(uuid.uuid4()))
