"""`sectorctl proving`: a Window PoSt over sectors, generated and then verified through the
manager (GenerateWindowPoSt, VerifyWindowPoSt), with its size and time."""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

from services.cli import render
from services.cli.connection import Connection, miner_from
from services.cli.names import WINDOW_POST
from services.cli.sector_args import bytes32, proving_sector, with_comm_rs
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2


def window_post(args: argparse.Namespace, conn: Connection) -> int:
    miner = miner_from(args)
    parsed, proof = with_comm_rs(args, conn, miner, [proving_sector(s) for s in args.sectors])
    randomness = bytes32(args.randomness, "--randomness") if args.randomness else secrets.token_bytes(31) + b"\x00"
    sectors = [
        common_pb2.ProvingSector(
            sector=common_pb2.SectorRef(id=common_pb2.SectorId(miner=miner, number=n), proof_type=proof), comm_r=c
        )
        for n, c in parsed
    ]
    stub = conn.manager()
    timeout = max(conn.timeout, 300.0)
    start = time.monotonic()
    post = stub.GenerateWindowPoSt(
        manager_pb2.GenerateWindowPoStRequest(proof_type=WINDOW_POST[proof], randomness=randomness, sectors=sectors),
        timeout=timeout,
    )
    generate_s = time.monotonic() - start
    valid, reason, verify_s = False, "no sector could be proven", 0.0
    skipped = {b.sector.number for b in post.skipped}
    proven = [s for s in sectors if s.sector.id.number not in skipped]
    if post.proofs:
        # The proof covers the sectors that were not skipped, as the chain would check it.
        start = time.monotonic()
        verdict = stub.VerifyWindowPoSt(
            manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=proven, proofs=post.proofs),
            timeout=timeout,
        )
        verify_s = time.monotonic() - start
        valid, reason = verdict.valid, verdict.reason
    size = sum(len(p.proof) for p in post.proofs)
    if args.json:
        render.emit_json(
            {
                "sectors": [n for n, _ in parsed],
                "randomness": randomness.hex(),
                "proofs": len(post.proofs),
                "proof_bytes": size,
                "skipped": [
                    {"miner": b.sector.miner, "number": b.sector.number, "reason": b.reason} for b in post.skipped
                ],
                "proven": [s.sector.id.number for s in proven],
                "valid": valid,
                "reason": reason,
                "generate_seconds": round(generate_s, 3),
                "verify_seconds": round(verify_s, 3),
            }
        )
    else:
        lines = [f"Window PoSt over {len(sectors)} sector(s) of miner {miner}, randomness {randomness.hex()}"]
        lines += [f"  skipped {b.sector.miner}/{b.sector.number}: {b.reason}" for b in post.skipped]
        if post.skipped:
            lines.append(
                f"  declare the {len(post.skipped)} skipped sector(s) faulty; the proof covers the other {len(proven)}"
            )
        if post.proofs:
            lines.append(f"  {len(post.proofs)} proof(s), {size} bytes, generated in {generate_s:.2f}s")
            lines.append(f"  verification: {'VALID' if valid else 'INVALID: ' + reason} ({verify_s:.2f}s)")
        else:
            lines.append("  no proof: no sector could be proven")
        render.emit("\n".join(lines))
    # Exit 1 when something was skipped too: the operator has faults to declare.
    return 0 if valid and not post.skipped else 1


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    verbs = groups.add_parser(
        "proving", help="Window PoSt (manager)", description="sectorctl proving: Window PoSt (manager)."
    ).add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("window-post", parents=[common], help="generate a Window PoSt for sectors, then verify it")
    p.add_argument(
        "sectors",
        nargs="+",
        metavar="SECTOR",
        help="sector number (its CommR is looked up in the manager), or NUMBER=COMMR (sealed CID or 64 hex digits)",
    )
    p.add_argument("--miner", type=int, help="miner actor id (default: SECTORSTORAGE_MINER or 1000)")
    p.add_argument("--size", help="sector size (default: from the task history)")
    p.add_argument("--randomness", help="32 bytes in hex (default: random)")
    p.set_defaults(func=window_post)
