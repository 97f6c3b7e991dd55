"""Inputs for a 512 MiB sector's later tasks made without running the earlier ones (which take
minutes): sparse unsealed data of zero pieces, and a cache as PC1 leaves it with its phase-1 blob.
The cancel tests and bench/cancel.py stop tasks on them, so only the inputs' shape matters."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2
from services.worker.sectors import prover_id
from tests.support.sectors import MINER, TICKET

SIZE = 512 << 20
PROVER = prover_id(MINER)


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def unsealed_input(seal_root: Path, number: int) -> list[common_pb2.PieceInfo]:
    sparse(seal_root / "unsealed" / f"s-t0{MINER}-{number}", SIZE)
    return [common_pb2.PieceInfo(size=SIZE, commp=rust_core.zero_piece_commitment(SIZE))]


def fabricated_pc1_output(seal_root: Path, number: int) -> bytes:
    """A cache as PC1 leaves it (tree_d with root comm_d, sparse layers) and its phase-1 blob
    (layout in rust_core/src/porep/pc1.rs, replica_id in src/porep/ids.rs)."""
    cache = seal_root / "cache" / f"s-t0{MINER}-{number}"
    nodes = SIZE // 32
    tree_d = cache / "sc-02-data-tree-d.dat"
    sparse(tree_d, (2 * nodes - 1) * 32)
    comm_d = rust_core.zero_piece_commitment(SIZE)
    with open(tree_d, "r+b") as f:
        f.seek((2 * nodes - 2) * 32)
        f.write(comm_d)
    for layer in (1, 2):
        sparse(cache / f"sc-02-data-layer-{layer}.dat", SIZE)
    porep_id = b"ssporep1" + struct.pack("<Q", SIZE) + bytes(16)
    rid = bytearray(
        hashlib.sha256(
            b"sectorstorage/porep/v1/replica-id" + PROVER + struct.pack("<Q", number) + TICKET + comm_d + porep_id
        ).digest()
    )
    rid[31] &= 0x3F
    return (
        b"SSP1"
        + struct.pack("<HQ", 1, SIZE)
        + PROVER
        + struct.pack("<Q", number)
        + TICKET
        + comm_d
        + bytes(rid)
        + struct.pack("<I", 0)
    )
