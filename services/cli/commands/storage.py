"""`sectorctl storage`: storage paths. The index knows every path (list, find); attaching,
detaching and rescanning a directory happen on the worker that has it (StorageAttachLocal,
StorageDetachLocal, StorageRedeclareLocal), so those verbs take --worker HOST:PORT."""

from __future__ import annotations

import argparse
from typing import Any

from services.cli import render
from services.cli.connection import Connection, miner_from
from services.cli.names import file_type_name, parse_size
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, manager_pb2, worker_pb2

FILE_TYPES = (
    common_pb2.SECTOR_FILE_TYPE_UNSEALED,
    common_pb2.SECTOR_FILE_TYPE_SEALED,
    common_pb2.SECTOR_FILE_TYPE_CACHE,
)


def _used(stat: common_pb2.FsStat) -> tuple[int, int]:
    """(used, limit) for the capacity bar: against max_storage when set, else the file system."""
    if stat.max:
        return stat.used, stat.max
    return stat.capacity - stat.fs_available, stat.capacity


def _workers_by_path(conn: Connection) -> dict[str, list[str]]:
    """storage id -> 'hostname:local_path' of the workers serving it (needs the manager; empty
    when no manager address is configured, as the index alone does not know hostnames)."""
    if not conn.manager_target:
        return {}
    out: dict[str, list[str]] = {}
    for w in conn.manager().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=conn.timeout).workers:
        for p in w.info.paths:
            out.setdefault(p.info.id, []).append(f"{w.info.hostname}:{p.local_path} ({w.info.worker_id})")
    return out


def list_paths(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.index().StorageList(index_pb2.StorageListRequest(), timeout=conn.timeout)
    workers = _workers_by_path(conn)
    if args.json:
        out = []
        for entry in reply.paths:
            d = render.message_dict(entry)
            d["workers"] = workers.get(entry.info.id, [])
            out.append(d)
        render.emit_json({"paths": out})
        return 0
    blocks = []
    for e in reply.paths:
        used, limit = _used(e.stat)
        roles = "/".join(r for r, on in (("seal", e.info.can_seal), ("store", e.info.can_store)) if on) or "none"
        health = "healthy" if e.health.healthy else f"UNHEALTHY{': ' + e.health.error if e.health.error else ''}"
        counts = ", ".join(f"{c.count} {file_type_name(c.type)}" for c in e.file_counts if c.count) or "no sector files"
        lines = [
            f"{e.info.id}:",
            f"  {render.bar(used, limit)}  {render.size(used)}/{render.size(limit)}"
            + (" (max-storage)" if e.stat.max else ""),
            f"  available {render.size(e.stat.available)}, reserved {render.size(e.stat.reserved)}, fs free {render.size(e.stat.fs_available)}",
            f"  weight {e.info.weight}; use: {roles}; {health}; {counts}",
        ]
        if e.info.groups:
            lines.append(f"  groups: {', '.join(e.info.groups)}")
        lines += [f"  url: {u}" for u in e.info.urls]
        lines += [f"  worker: {w}" for w in workers.get(e.info.id, [])]
        blocks.append("\n".join(lines))
    render.emit("\n".join(blocks) if blocks else "no storage paths attached")
    return 0


def attach(args: argparse.Namespace, conn: Connection) -> int:
    request = worker_pb2.StorageAttachLocalRequest(path=args.path)
    if args.init:
        if not (args.seal or args.store):
            raise ValueError("--init needs --seal and/or --store (what the path is for)")
        init = worker_pb2.StoragePathConfig(
            can_seal=args.seal, can_store=args.store, groups=args.groups or [], allow_to=args.allow_to or []
        )
        if args.weight is not None:
            init.weight = args.weight
        if args.max_storage:
            init.max_storage = parse_size(args.max_storage)
        request.init.CopyFrom(init)
    elif args.seal or args.store or args.weight is not None or args.max_storage:
        raise ValueError(
            "--seal, --store, --weight and --max-storage only apply with --init (without it the path's sectorstore.json decides)"
        )
    reply = conn.worker(args.worker).StorageAttachLocal(request, timeout=conn.timeout)
    if args.json:
        render.emit_json(render.message_dict(reply))
    else:
        info = reply.path.info
        roles = "/".join(r for r, on in (("seal", info.can_seal), ("store", info.can_store)) if on)
        render.emit(
            f"attached {reply.path.local_path} as {info.id} ({roles}, weight {info.weight}); {reply.declared} sector file(s) declared"
        )
    return 0


def _target(value: str) -> dict[str, str]:
    return {"local_path": value} if value.startswith("/") else {"storage_id": value}


def detach(args: argparse.Namespace, conn: Connection) -> int:
    request = worker_pb2.StorageDetachLocalRequest(force=args.force, **_target(args.path_or_id))
    reply = conn.worker(args.worker).StorageDetachLocal(request, timeout=conn.timeout)
    if args.json:
        render.emit_json({"storage_id": reply.storage_id, "detached": True})
    else:
        render.emit(f"detached {reply.storage_id} from {args.worker} (files stay on disk)")
    return 0


def find(args: argparse.Namespace, conn: Connection) -> int:
    sector = common_pb2.SectorId(miner=miner_from(args), number=args.sector)
    reply = conn.index().StorageFindSector(
        index_pb2.StorageFindSectorRequest(sector=sector, types=FILE_TYPES), timeout=conn.timeout
    )
    workers = _workers_by_path(conn)
    if args.json:
        locations = []
        for loc in reply.locations:
            d = render.message_dict(loc)
            d["type_names"] = [file_type_name(t) for t in loc.types]
            d["workers"] = workers.get(loc.id, [])
            locations.append(d)
        render.emit_json({"sector": {"miner": sector.miner, "number": sector.number}, "locations": locations})
        return 0
    if not reply.locations:
        render.emit(f"sector {sector.miner}/{sector.number}: no files in any path")
        return 0
    lines = [f"sector {sector.miner}/{sector.number}:"]
    for loc in reply.locations:
        types = ", ".join(file_type_name(t) for t in loc.types)
        flags = ", ".join(
            f for f, on in (("primary", loc.primary), ("seal", loc.can_seal), ("store", loc.can_store)) if on
        )
        where = "; ".join(workers.get(loc.id, [])) or ", ".join(loc.urls)
        lines.append(f"  {types:<24} in {loc.id} ({flags}{'' if loc.healthy else ', UNHEALTHY'})  {where}")
    render.emit("\n".join(lines))
    return 0


def redeclare(args: argparse.Namespace, conn: Connection) -> int:
    storage_id = _storage_id_of(args, conn)
    reply = conn.worker(args.worker).StorageRedeclareLocal(
        worker_pb2.StorageRedeclareLocalRequest(storage_id=storage_id, drop_missing=args.drop_missing),
        timeout=conn.timeout,
    )
    if args.json:
        render.emit_json(render.message_dict(reply))
    else:
        rows = [(p.storage_id, p.declared, p.unchanged, p.dropped) for p in reply.paths]
        render.emit(render.table(("PATH", "DECLARED", "UNCHANGED", "DROPPED"), rows))
    return 0


def _storage_id_of(args: argparse.Namespace, conn: Connection) -> str:
    """The RPCs take storage ids: a directory given instead is looked up among the worker's paths."""
    storage_id: str = args.path_or_id or ""
    if not storage_id.startswith("/"):
        return storage_id
    paths = conn.worker(args.worker).Paths(worker_pb2.PathsRequest(), timeout=conn.timeout).paths
    match = [p.info.id for p in paths if p.local_path.rstrip("/") == storage_id.rstrip("/")]
    if not match:
        raise ValueError(f"{storage_id} is not a storage path of the worker at {args.worker}: see `storage list`")
    return match[0]


def _removed_sectors(conn: Connection) -> list[common_pb2.SectorId]:
    out: list[common_pb2.SectorId] = []
    request = manager_pb2.ListSectorsRequest(states=[manager_pb2.SECTOR_LIFECYCLE_STATE_REMOVED], page_size=1000)
    while True:
        reply = conn.manager().ListSectors(request, timeout=conn.timeout)
        out.extend(s.sector.id for s in reply.sectors)
        if not reply.next_page_token:
            return out
        request.page_token = reply.next_page_token


def cleanup_removed(args: argparse.Namespace, conn: Connection) -> int:
    """Sectors the manager records as removed whose files are still in the fleet (a holder was
    unreachable when they were removed): listed, and with --apply removed again (ADMIN)."""
    rows = []
    for sector in _removed_sectors(conn):
        found = conn.index().StorageFindSector(
            index_pb2.StorageFindSectorRequest(sector=sector, types=FILE_TYPES), timeout=conn.timeout
        )
        left = [(loc.id, [file_type_name(t) for t in loc.types]) for loc in found.locations if not loc.fetch_candidate]
        if not left:
            continue
        state = "left over"
        if args.apply:
            removed = conn.manager().Remove(manager_pb2.RemoveRequest(sector=sector), timeout=conn.timeout).removed
            state = f"removed {len(removed)} file(s)"
        rows.append((sector, left, state))
    if args.json:
        render.emit_json(
            {
                "apply": args.apply,
                "sectors": [
                    {
                        "miner": s.miner,
                        "number": s.number,
                        "paths": [{"id": i, "types": t} for i, t in left],
                        "state": st,
                    }
                    for s, left, st in rows
                ],
            }
        )
        return 0
    render.emit(
        render.table(
            ("SECTOR", "PATHS", "STATE"),
            [(f"{s.miner}/{s.number}", ", ".join(f"{i} ({'+'.join(t)})" for i, t in left), st) for s, left, st in rows],
        )
    )
    done = "removed again" if args.apply else "removable with --apply"
    render.emit(f"{len(rows)} removed sector(s) still have files in the fleet; {done}")
    return 0


def cleanup(args: argparse.Namespace, conn: Connection) -> int:
    """Dry run by default: what a removal would take is shown first, the operator then repeats with
    --apply (the worker re-checks the index and the locks for each file it removes). With
    --removed: the files of sectors the manager records as removed, fleet-wide."""
    if args.removed:
        if args.worker or args.path_or_id:
            raise ValueError("--removed works fleet-wide: give no PATH_OR_ID or --worker with it")
        return cleanup_removed(args, conn)
    if not args.worker:
        raise ValueError("cleanup needs --worker HOST:PORT (or --removed for removed sectors fleet-wide)")
    reply = conn.worker(args.worker).StorageCleanup(
        worker_pb2.StorageCleanupRequest(storage_id=_storage_id_of(args, conn), apply=args.apply), timeout=conn.timeout
    )
    if args.json:
        document = render.message_dict(reply)
        document["apply"] = args.apply
        render.emit_json(document)
        return 0
    rows = [
        (
            e.storage_id,
            e.path,
            render.size(e.size),
            "removed" if e.removed else (f"kept: {e.skipped}" if e.skipped else "would remove"),
        )
        for e in reply.entries
    ]
    render.emit(render.table(("PATH ID", "FILE", "SIZE", "STATE"), rows))
    done = "removed" if args.apply else "reclaimable with --apply"
    render.emit(
        f"{len(reply.entries)} files no sector in the index owns; {render.size(reply.reclaimable_bytes)} {done}"
    )
    return 0


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    verbs = groups.add_parser(
        "storage",
        help="storage paths (index and workers)",
        description="sectorctl storage: storage paths (index and workers).",
    ).add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser(
        "list", parents=[common], help="every path: capacity, use, weight, roles, health, URLs, workers"
    )
    p.set_defaults(func=list_paths)

    p = verbs.add_parser("attach", parents=[common], help="attach a directory on a worker as a storage path")
    p.add_argument("path", metavar="PATH", help="absolute directory on the worker's host")
    p.add_argument("--worker", required=True, metavar="HOST:PORT", help="the worker's gRPC address")
    p.add_argument("--init", action="store_true", help="create the directory and a new sectorstore.json")
    p.add_argument("--seal", action="store_true", help="(with --init) usable for sealing scratch files")
    p.add_argument("--store", action="store_true", help="(with --init) usable for long-term storage")
    p.add_argument("--weight", type=int, help="(with --init) preference among paths (default 10)")
    p.add_argument("--max-storage", metavar="SIZE", help="(with --init) cap on bytes held, e.g. 100GiB")
    p.add_argument("--groups", nargs="*", metavar="GROUP", help="(with --init) storage groups this path belongs to")
    p.add_argument(
        "--allow-to", nargs="*", metavar="GROUP", help="(with --init) groups sector files may be fetched to from here"
    )
    p.set_defaults(func=attach)

    p = verbs.add_parser("detach", parents=[common], help="stop using a path on a worker (files stay on disk)")
    p.add_argument("path_or_id", metavar="PATH_OR_ID", help="the local directory (absolute) or the storage id")
    p.add_argument("--worker", required=True, metavar="HOST:PORT")
    p.add_argument("--force", action="store_true", help="even while running tasks use it")
    p.set_defaults(func=detach)

    p = verbs.add_parser("find", parents=[common], help="which paths hold which files of a sector")
    p.add_argument("sector", type=int, metavar="SECTOR", help="sector number")
    p.add_argument("--miner", type=int, help="miner actor id (default: SECTORSTORAGE_MINER or 1000)")
    p.set_defaults(func=find)

    p = verbs.add_parser(
        "redeclare", parents=[common], help="rescan a worker's paths and reconcile the index with the disk"
    )
    p.add_argument("path_or_id", nargs="?", metavar="PATH_OR_ID", help="only this path (default: all of the worker's)")
    p.add_argument("--worker", required=True, metavar="HOST:PORT")
    p.add_argument("--drop-missing", action="store_true", help="drop declarations of files no longer on disk")
    p.set_defaults(func=redeclare)

    p = verbs.add_parser(
        "cleanup",
        parents=[common],
        help="list (or with --apply remove) files on a worker's paths that no sector in the index owns",
    )
    p.add_argument("path_or_id", nargs="?", metavar="PATH_OR_ID", help="only this path (default: all of the worker's)")
    p.add_argument("--worker", metavar="HOST:PORT", help="the worker whose paths to clean (required without --removed)")
    p.add_argument(
        "--removed",
        action="store_true",
        help="instead: files of sectors the manager records as removed, fleet-wide (Remove again with --apply)",
    )
    p.add_argument("--apply", action="store_true", help="remove the files listed as removable (default: dry run)")
    p.set_defaults(func=cleanup)
