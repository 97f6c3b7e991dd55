"""`sectorctl sectors`: seal files into a sector through the manager with live progress, read a
piece range back (unsealing if needed), show a sector's commitments, and check sectors are
provable."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.cli import pieces, render
from services.cli.connection import Connection, miner_from
from services.cli.names import SECTOR_SIZES, WINDOW_POST, seal_proof
from services.cli.progress import Progress
from services.cli.sealing import SealedSector, seal_pieces
from services.cli.sector_args import bytes32, default_randomness, proof_for, proving_sector, with_comm_rs
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2

HISTORY_PAGES = 50


def _next_free_number(conn: Connection, miner: int) -> int:
    """One more than the miner's highest sector number in the task history and live jobs."""
    stub = conn.manager()
    highest = 0
    for job in stub.SealingJobs(manager_pb2.SealingJobsRequest(include_delivered=True), timeout=conn.timeout).jobs:
        if job.sector.id.miner == miner:
            highest = max(highest, job.sector.id.number)
    request = manager_pb2.TaskHistoryRequest(page_size=1000)
    for _ in range(HISTORY_PAGES):
        reply = stub.TaskHistory(request, timeout=conn.timeout)
        highest = max([highest, *(r.sector.id.number for r in reply.runs if r.sector.id.miner == miner)])
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    return highest + 1


def commitment_lines(c: common_pb2.SectorCommitments) -> list[str]:
    """comm_r and comm_d as `sectors seal` and `sectors info` print them: CID, then hex."""
    return [f"  comm_r  {c.sealed_cid}  ({c.comm_r.hex()})", f"  comm_d  {c.unsealed_cid}  ({c.comm_d.hex()})"]


def _sealed_dict(result: SealedSector, files: list[Path], total_s: float, ticket: bytes, seed: bytes) -> dict[str, Any]:
    c = result.commitments
    return {
        "sector": {
            "miner": result.ref.id.miner,
            "number": result.ref.id.number,
            "proof_type": common_pb2.RegisteredSealProof.Name(result.ref.proof_type),
        },
        "comm_r": c.comm_r.hex(),
        "comm_d": c.comm_d.hex(),
        "sealed_cid": c.sealed_cid,
        "unsealed_cid": c.unsealed_cid,
        "pieces": [{"piece_cid": p.piece_cid, "size": p.size} for p in result.pieces],
        "files": [str(f) for f in files],
        "ticket": ticket.hex(),
        "seed": seed.hex(),
        "proof_bytes": len(result.proof),
        "verified": result.verified,
        "verify_reason": result.verify_reason,
        "seconds": {"total": round(total_s, 3)},
    }


def seal(args: argparse.Namespace, conn: Connection) -> int:
    proof = seal_proof(args.size)
    sector_size = SECTOR_SIZES[proof]
    files = [Path(f) for f in args.files]
    for f in files:
        if not f.is_file():
            raise ValueError(f"{f} is not a file")
    sources = pieces.sources(files, sector_size)  # says clearly when they don't fit
    miner = miner_from(args)
    stub = conn.manager()
    number = args.sector if args.sector is not None else _next_free_number(conn, miner)
    ticket = bytes32(args.ticket, "--ticket") if args.ticket else default_randomness("ticket", miner, number)
    seed = bytes32(args.seed, "--seed") if args.seed else default_randomness("seed", miner, number)
    ref = common_pb2.SectorRef(id=common_pb2.SectorId(miner=miner, number=number), proof_type=proof)
    out = sys.stderr if args.json else sys.stdout
    print(
        f"sealing {len(files)} file(s) into sector {miner}/{number} ({render.size(sector_size)}, {len(sources)} piece(s))",
        file=out,
        flush=True,
    )
    progress = Progress(stub, ref.id, out)
    start = time.monotonic()
    result = seal_pieces(stub, ref, sources, ticket, seed, progress, keep_unsealed=args.keep_unsealed)
    document = _sealed_dict(result, files, time.monotonic() - start, ticket, seed)
    document["seconds"].update({k: round(v, 3) for k, v in progress.seconds.items()})
    if args.json:
        render.emit_json(document)
    else:
        lines = [
            f"sector {miner}/{number} sealed in {document['seconds']['total']:.2f}s",
            *commitment_lines(result.commitments),
        ]
        for slot_source, p in zip(sources, result.pieces, strict=True):
            what = slot_source.label.removeprefix("AddPiece ")
            lines.append(f"  piece   {p.piece_cid}  {render.size(p.size):>9}  {what}")
        lines.append(
            f"  proof   {len(result.proof)} bytes; VerifySeal: {'VALID' if result.verified else 'INVALID: ' + result.verify_reason}"
        )
        render.emit("\n".join(lines))
    return 0 if result.verified else 1


def read(args: argparse.Namespace, conn: Connection) -> int:
    miner = miner_from(args)
    sector = common_pb2.SectorId(miner=miner, number=args.sector)
    ref = common_pb2.SectorRef(id=sector, proof_type=proof_for(args, conn, sector))
    ticket = bytes32(args.ticket, "--ticket") if args.ticket else default_randomness("ticket", miner, args.sector)
    request = manager_pb2.ReadPieceRequest(
        sector=ref,
        range=common_pb2.UnpaddedByteRange(offset=args.offset, size=args.length),
        ticket=ticket,
        unsealed_cid=args.unsealed_cid or "",
    )
    stream = conn.manager().ReadPiece(request, timeout=max(conn.timeout, 600.0))
    header = next(stream).header
    digest = hashlib.sha256()
    size = 0
    with open(args.out, "wb") if args.out else contextlib.nullcontext() as sink:
        for message in stream:
            data = message.chunk.data
            digest.update(data)
            size += len(data)
            if sink is not None:
                sink.write(data)
            elif not args.json:
                sys.stdout.buffer.write(data)
    if args.json:
        render.emit_json(
            {
                "sector": args.sector,
                "offset": args.offset,
                "size": size,
                "did_unseal": header.did_unseal,
                "sha256": digest.hexdigest(),
                "out": args.out,
            }
        )
    elif args.out:
        print(
            f"wrote {size} bytes to {args.out} (sha256 {digest.hexdigest()}){'; unsealed first' if header.did_unseal else ''}"
        )
    else:
        sys.stdout.buffer.flush()
    return 0


def check(args: argparse.Namespace, conn: Connection) -> int:
    miner = miner_from(args)
    parsed: list[tuple[int, bytes | None]] = [proving_sector(s) for s in args.sectors]
    if args.expensive:  # needs each sector's CommR: given, or looked up in the manager
        with_comm_r, proof = with_comm_rs(args, conn, miner, parsed)
        parsed = list(with_comm_r)
    else:
        proof = proof_for(args, conn, common_pb2.SectorId(miner=miner, number=parsed[0][0]))
    sectors = [
        common_pb2.ProvingSector(
            sector=common_pb2.SectorRef(id=common_pb2.SectorId(miner=miner, number=n), proof_type=proof),
            comm_r=c or b"",
        )
        for n, c in parsed
    ]
    reply = conn.manager().CheckProvable(
        manager_pb2.CheckProvableRequest(proof_type=WINDOW_POST[proof], sectors=sectors, expensive=args.expensive),
        timeout=max(conn.timeout, 300.0),
    )
    bad = {b.sector.number: b.reason for b in reply.bad_sectors}
    if args.json:
        render.emit_json(
            {
                "checked": [n for n, _ in parsed],
                "provable": [n for n, _ in parsed if n not in bad],
                "bad_sectors": [{"miner": miner, "number": n, "reason": r} for n, r in bad.items()],
            }
        )
    else:
        rows = [(f"{miner}/{n}", "FAULTY" if n in bad else "ok", bad.get(n, "")) for n, _ in parsed]
        render.emit(render.table(("SECTOR", "STATUS", "REASON"), rows))
        render.emit(f"{len(parsed) - len(bad)}/{len(parsed)} provable")
    return 0


def info(args: argparse.Namespace, conn: Connection) -> int:
    miner = miner_from(args)
    request = manager_pb2.SectorCommitmentsRequest(sector=common_pb2.SectorId(miner=miner, number=args.sector))
    known = conn.manager().SectorCommitments(request, timeout=conn.timeout)  # NOT_FOUND: no PC2 result known
    c = common_pb2.SectorCommitments(
        comm_r=known.comm_r, comm_d=known.comm_d, sealed_cid=known.sealed_cid, unsealed_cid=known.unsealed_cid
    )
    proof = common_pb2.RegisteredSealProof.Name(known.sector.proof_type)
    recorded = datetime.fromtimestamp(known.recorded_at.ToNanoseconds() / 1e9, UTC)
    if args.json:
        render.emit_json(
            {
                "sector": {"miner": miner, "number": args.sector, "proof_type": proof},
                "comm_r": c.comm_r.hex(),
                "comm_d": c.comm_d.hex(),
                "sealed_cid": c.sealed_cid,
                "unsealed_cid": c.unsealed_cid,
                "recorded_at": recorded.isoformat().replace("+00:00", "Z"),
            }
        )
    else:
        size = render.size(SECTOR_SIZES[known.sector.proof_type]) if known.sector.proof_type in SECTOR_SIZES else "?"
        lines = [
            f"sector {miner}/{args.sector}",
            f"  proof   {proof} ({size})",
            *commitment_lines(c),
            f"  pc2     {recorded:%Y-%m-%d %H:%M:%S} UTC",
        ]
        render.emit("\n".join(lines))
    return 0


def _when(ts: Any) -> str:
    return (
        datetime.fromtimestamp(ts.ToNanoseconds() / 1e9, UTC).isoformat().replace("+00:00", "Z") if ts.seconds else ""
    )


def _short(name: str, prefix: str) -> str:
    return name.removeprefix(prefix)


def status(args: argparse.Namespace, conn: Connection) -> int:
    """Where a sector is in its lifecycle: state, generation, pieces, steps done, its work."""
    miner = miner_from(args)
    request = manager_pb2.SectorStatusRequest(sector=common_pb2.SectorId(miner=miner, number=args.sector))
    st = conn.manager().SectorStatus(request, timeout=conn.timeout)  # NOT_FOUND: no record
    state = _short(manager_pb2.SectorLifecycleState.Name(st.state), "SECTOR_LIFECYCLE_STATE_")
    steps = [(_short(manager_pb2.SectorStep.Name(s.step), "SECTOR_STEP_"), _when(s.done_at)) for s in st.steps]
    jobs = [
        (
            common_pb2.TaskType.Name(j.task_type).removeprefix("TASK_TYPE_"),
            manager_pb2.JobState.Name(j.state).removeprefix("JOB_STATE_"),
            j.worker_id,
            j.call_id.id,
            j.attempt,
        )
        for j in st.jobs
    ]
    proof = common_pb2.RegisteredSealProof.Name(st.sector.proof_type) if st.sector.proof_type else "?"
    if args.json:
        render.emit_json(
            {
                "sector": {"miner": miner, "number": args.sector, "proof_type": proof},
                "state": state,
                "generation": st.generation,
                "pieces": [{"size": p.size, "piece_cid": p.piece_cid} for p in st.pieces],
                "steps": [{"step": name, "done_at": when} for name, when in steps],
                "last_error": st.last_error,
                "jobs": [
                    {"task": t, "state": s_, "worker_id": w, "call_id": c, "attempt": a} for t, s_, w, c, a in jobs
                ],
                "created_at": _when(st.created_at),
                "updated_at": _when(st.updated_at),
            }
        )
        return 0
    lines = [
        f"sector {miner}/{args.sector}",
        f"  state       {state} (generation {st.generation})",
        f"  proof       {proof}",
        f"  pieces      {len(st.pieces)}"
        + "".join(f"\n    {render.size(p.size):>9}  {p.piece_cid}" for p in st.pieces),
    ]
    if steps:
        lines.append("  steps done")
        lines.extend(f"    {name:<13} {when}" for name, when in steps)
    if st.last_error:
        lines.append(f"  last error  {st.last_error}")
    render.emit("\n".join(lines))
    if jobs:
        render.emit(
            render.table(
                ("TASK", "STATE", "WORKER", "CALL", "ATTEMPT"),
                [(t, s_, w or "-", c, str(a)) for t, s_, w, c, a in jobs],
            )
        )
    return 0


def remove(args: argparse.Namespace, conn: Connection) -> int:
    """Removes a sector everywhere (ManagerService.Remove, ADMIN): its pipeline ends and every
    file goes. Destroys data, so it wants --really-do-it."""
    if not args.really_do_it:
        raise ValueError(
            "removing a sector deletes its sealed replica and unsealed data everywhere: add --really-do-it"
        )
    miner = miner_from(args)
    reply = conn.manager().Remove(
        manager_pb2.RemoveRequest(sector=common_pb2.SectorId(miner=miner, number=args.sector)), timeout=conn.timeout
    )
    if args.json:
        render.emit_json(
            {
                "sector": {"miner": miner, "number": args.sector},
                "removed": [render.message_dict(r) for r in reply.removed],
            }
        )
    else:
        render.emit(f"sector {miner}/{args.sector} removed ({len(reply.removed)} file(s) deleted)")
        for r in reply.removed:
            render.emit(
                f"  {common_pb2.SectorFileType.Name(r.type).removeprefix('SECTOR_FILE_TYPE_').lower():<9} {r.storage_id}"
            )
    return 0


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    verbs = groups.add_parser(
        "sectors",
        help="seal, read and check sectors (manager)",
        description="sectorctl sectors: seal, read and check sectors (manager).",
    ).add_subparsers(dest="verb", required=True, metavar="VERB")
    miner_help = "miner actor id (default: SECTORSTORAGE_MINER or 1000)"

    p = verbs.add_parser(
        "seal", parents=[common], help="seal files into one sector (AddPiece ... C2, VerifySeal, Finalize)"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="each becomes a piece, padded to the next 127*2^k bytes")
    p.add_argument("--size", required=True, help="sector size: 2KiB, 8MiB, 512MiB (32GiB, 64GiB)")
    p.add_argument("--miner", type=int, help=miner_help)
    p.add_argument("--sector", type=int, help="sector number (default: one more than the highest the manager has seen)")
    p.add_argument("--ticket", help="sealing ticket, 64 hex digits (default: derived from the sector id)")
    p.add_argument("--seed", help="interactive seed, 64 hex digits (default: derived from the sector id)")
    p.add_argument("--keep-unsealed", action="store_true", help="keep the unsealed copy (reads then need no unseal)")
    p.set_defaults(func=seal)

    p = verbs.add_parser(
        "read", parents=[common], help="read unpadded bytes of a sector's pieces (unsealing first if needed)"
    )
    p.add_argument("sector", type=int, metavar="SECTOR")
    p.add_argument("--offset", type=int, required=True, help="unpadded offset, a multiple of 127")
    p.add_argument("--length", type=int, required=True, help="unpadded length, 127*2^k")
    p.add_argument(
        "--out",
        help="write the bytes to this file (default: stdout; with --json only their size and sha256 are printed)",
    )
    p.add_argument("--miner", type=int, help=miner_help)
    p.add_argument("--size", help="sector size (default: from the task history)")
    p.add_argument("--ticket", help="the sealing ticket, needed to unseal (default: as `sectors seal` derives it)")
    p.add_argument("--unsealed-cid", help="the sector's CommD CID, needed to unseal (see `sectors seal`)")
    p.set_defaults(func=read)

    p = verbs.add_parser(
        "info", parents=[common], help="a sector's proof type and commitments (from its SealPreCommit2)"
    )
    p.add_argument("sector", type=int, metavar="SECTOR")
    p.add_argument("--miner", type=int, help=miner_help)
    p.set_defaults(func=info)

    p = verbs.add_parser(
        "status", parents=[common], help="where a sector is in its lifecycle: state, pieces, steps done, its work"
    )
    p.add_argument("sector", type=int, metavar="SECTOR")
    p.add_argument("--miner", type=int, help=miner_help)
    p.set_defaults(func=status)

    p = verbs.add_parser(
        "remove", parents=[common], help="delete a sector's files everywhere and end its pipeline (ADMIN)"
    )
    p.add_argument("sector", type=int, metavar="SECTOR")
    p.add_argument("--miner", type=int, help=miner_help)
    p.add_argument(
        "--really-do-it", action="store_true", help="required: the sealed replica and unsealed data are deleted"
    )
    p.set_defaults(func=remove)

    p = verbs.add_parser("check", parents=[common], help="which sectors could not be proven now, and why")
    p.add_argument(
        "sectors",
        nargs="+",
        metavar="SECTOR",
        help="sector number, or NUMBER=COMMR (with --expensive a bare number's CommR is looked up in the manager)",
    )
    p.add_argument("--miner", type=int, help=miner_help)
    p.add_argument("--size", help="sector size (default: from the task history)")
    p.add_argument("--expensive", action="store_true", help="also generate a vanilla proof for a random challenge")
    p.set_defaults(func=check)
