"""Sector arguments of `sectors` and `proving`: the miner, the sector's size (given, or looked up
in the manager's task history), tickets/seeds/randomness and CommR values from the command line."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence

import grpc

from services.cli.connection import ConfigError, Connection
from services.cli.names import SECTOR_SIZES, seal_proof
from services.common import cid
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2


def default_randomness(kind: str, miner: int, number: int) -> bytes:
    """Deterministic 32 bytes per sector (chain randomness in a real deployment), so a later
    `sectors read` can unseal with the ticket `sectors seal` used; the last byte is zero to stay
    inside the BLS12-381 field, as the demo does."""
    return hashlib.sha256(f"sectorctl {kind} {miner}/{number}".encode()).digest()[:31] + b"\x00"


def bytes32(text: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ValueError(f"{what} must be 32 bytes in hex (64 hex digits), got {text!r}") from None
    if len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes in hex (64 hex digits), got {len(value)} bytes")
    return value


def comm_r(text: str, what: str) -> bytes:
    """A CommR as its sealed CID (bagboea4b5abc...) or 64 hex digits."""
    if text.startswith("b"):
        try:
            return cid.commitment_of_sealed_cid(text)
        except cid.CidError as exc:
            raise ValueError(f"{what}: {text!r} is not a sealed CID ({exc})") from None
    return bytes32(text, what)


def proof_for(
    args: argparse.Namespace, conn: Connection, sector: common_pb2.SectorId
) -> common_pb2.RegisteredSealProof.ValueType:
    """The sector's seal proof: from --size, else from the sector's runs in the task history."""
    if getattr(args, "size", None):
        return seal_proof(args.size)
    runs = (
        conn.manager()
        .TaskHistory(manager_pb2.TaskHistoryRequest(sector=sector, page_size=1), timeout=conn.timeout)
        .runs
    )
    if runs and runs[0].sector.proof_type in SECTOR_SIZES:
        return runs[0].sector.proof_type
    raise ConfigError(
        f"can't tell the size of sector {sector.miner}/{sector.number} (no task history): pass --size (2KiB, 8MiB, 512MiB, ...)"
    )


def proving_sector(text: str) -> tuple[int, bytes | None]:
    """'N' or 'N=COMMR' -> (number, comm_r or None)."""
    number, _, commr = text.partition("=")
    try:
        n = int(number)
    except ValueError:
        raise ValueError(
            f"sector {text!r}: expected a sector number, optionally with its CommR as NUMBER=COMMR"
        ) from None
    return n, (comm_r(commr, f"CommR of sector {n}") if commr else None)


def sector_commitments(conn: Connection, sector: common_pb2.SectorId) -> manager_pb2.SectorCommitmentsResponse:
    """The commitments the manager recorded from the sector's SealPreCommit2; a clear error when it
    knows none."""
    try:
        return conn.manager().SectorCommitments(
            manager_pb2.SectorCommitmentsRequest(sector=sector), timeout=conn.timeout
        )
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.NOT_FOUND:
            raise ValueError(
                f"sector {sector.miner}/{sector.number}: the manager knows no CommR for it (NOT_FOUND: {exc.details()}); "
                "give it as NUMBER=COMMR (the comm_r sealed CID or hex `sectors seal` printed)"
            ) from None
        raise


def with_comm_rs(
    args: argparse.Namespace, conn: Connection, miner: int, parsed: Sequence[tuple[int, bytes | None]]
) -> tuple[list[tuple[int, bytes]], common_pb2.RegisteredSealProof.ValueType]:
    """Each sector with its CommR (given as NUMBER=COMMR, else looked up with SectorCommitments),
    and the seal proof (--size, else the looked-up sector's, else the task history's)."""
    proof: common_pb2.RegisteredSealProof.ValueType | None = (
        seal_proof(args.size) if getattr(args, "size", None) else None
    )
    out: list[tuple[int, bytes]] = []
    for number, given in parsed:
        if given is not None:
            out.append((number, given))
            continue
        known = sector_commitments(conn, common_pb2.SectorId(miner=miner, number=number))
        if proof is None and known.sector.proof_type in SECTOR_SIZES:
            proof = known.sector.proof_type
        out.append((number, bytes(known.comm_r)))
    if proof is None:
        proof = proof_for(args, conn, common_pb2.SectorId(miner=miner, number=parsed[0][0]))
    return out, proof
