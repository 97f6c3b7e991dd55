"""Index benchmark: StorageFindSector and StorageDeclareSector over gRPC against the same
transaction run directly on the database (the limit), on SQLite and on PostgreSQL.

Setup per backend: a fresh database (SQLite file; PostgreSQL: a throwaway server with its default,
durable settings), the index schema, then 100 paths and 1,000,000 declared sector files
bulk-loaded through the store (500,000 sectors with sealed + cache each, spread over the paths), then one
`sectorstorage-index` process on it with the default config (auth on, SQLite synchronous=full).

Load: 16 concurrent clients (asyncio tasks, each on its own channel, spread over client
processes) over loopback for a fixed time after a warm-up; each request's latency is measured at
the client. FindSector asks for (sealed, cache) of a random loaded sector; DeclareSector declares
the unsealed file of a new sector in a random path. The direct limit calls what the servicer
calls, the index store's public `find` and `declare` (same transactions, through
services/common/db), from 16 concurrent tasks in one process with no gRPC, so the ratio shows
what the RPC layer costs. The bench uses the index's public entry points only (architecture.toml).

    python -m bench.index                       # both backends, the figures of docs/benchmarks.md
    python -m bench.index --backends sqlite --seconds 5 --files 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MINER = 1000
SEALED, CACHE, UNSEALED = 2, 4, 1
SECRET = "bench-fleet-key-0123456789abcdef-0123456789abcdef"
DECLARE_BASE = 10_000_000  # new sectors for DeclareSector start here


@dataclass
class Result:
    backend: str
    op: str
    via: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    load: float
    # CPU time per request: the index process (gRPC runs) and the load generators / direct runner.
    server_cpu_us: float = 0.0
    client_cpu_us: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def summarize(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return 0.0, 0.0
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


# -- setup ---------------------------------------------------------------------------------------


def index_config(url: str, data_dir: Path, threads: int = 4) -> Any:
    """The index's own config for this database, as the benchmarked server has it (paths never
    go unhealthy during a run)."""
    from services.common.config import load_config
    from services.index.config import IndexConfig

    env = {
        "SECTORSTORAGE_DATABASE_URL": url,
        "SECTORSTORAGE_DATA_DIR": str(data_dir),
        "SECTORSTORAGE_INDEX_HEARTBEAT_TIMEOUT_S": "86400",
        "SECTORSTORAGE_INDEX_DB_THREADS": str(threads),
    }
    return load_config(IndexConfig, env=env)


def open_store(url: str, data_dir: Path, threads: int = 4) -> Any:
    """The index's store on this database, opened and migrated the way the service does it
    (services/index/app.py), so the bench uses the index's public entry points only."""
    from services.index.app import open_index_database
    from services.index.store import IndexStore

    config = index_config(url, data_dir, threads)
    return IndexStore(open_index_database(config), heartbeat_timeout=config.index.heartbeat_timeout_s)


def bulk_load(url: str, data_dir: Path, paths: int, files: int) -> list[str]:
    """Creates the schema and loads `paths` healthy paths and `files` sector files through the
    index's store: StorageAttach's `attach` per path, then StorageRedeclare's `redeclare` with
    each path's sectors (one transaction per path)."""
    from services.common.db.dialect import Dialect
    from services.index.domain import FsStat, PathInfo

    store = open_store(url, data_dir)
    ids = [str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(paths)]
    sectors = files // 2

    async def load() -> None:
        for i, sid in enumerate(ids):
            info = PathInfo(id=sid, urls=(f"10.0.{i // 250}.{i % 250}:3456",), weight=10, can_seal=True, can_store=True)
            await store.attach(info, FsStat(capacity=1 << 44, available=1 << 43, fs_available=1 << 43))
        for i, sid in enumerate(ids):
            # Sector n lives on path n % paths, sealed and cache files, primary.
            held = {(MINER, n, t): True for n in range(i, sectors, paths) for t in (SEALED, CACHE)}
            await store.redeclare(sid, held, drop_missing=False)

    asyncio.run(load())
    db = store.db
    if db.dialect is Dialect.POSTGRESQL:
        import psycopg

        db.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    else:
        db.transact(lambda tx: tx.execute("ANALYZE"))
        db.close()
    return ids


# -- load workers (run in their own processes) --------------------------------------------------


def grpc_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs spec['clients'] concurrent clients against the index; returns latencies."""
    from services.common.client import aio_channel
    from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, index_pb2_grpc

    op, sectors, ids = spec["op"], spec["sectors"], spec["path_ids"]
    latencies: list[float] = []
    errors = 0
    total = 0

    async def client(k: int, stop_at: float, record_from: float) -> None:
        nonlocal errors, total
        rng = random.Random(spec["seed"] * 1000 + k)
        next_new = DECLARE_BASE + spec["seed"] * 10_000_000 + k * 100_000
        async with aio_channel(spec["address"], spec["token"]) as channel:
            stub = index_pb2_grpc.IndexServiceStub(channel)
            while True:
                start = time.perf_counter()
                if start >= stop_at:
                    return
                try:
                    if op == "find":
                        await stub.StorageFindSector(
                            index_pb2.StorageFindSectorRequest(
                                sector=common_pb2.SectorId(miner=MINER, number=rng.randrange(sectors)),
                                types=[SEALED, CACHE],
                            ),
                            timeout=30,
                        )
                    else:
                        next_new += 1
                        await stub.StorageDeclareSector(
                            index_pb2.StorageDeclareSectorRequest(
                                storage_id=rng.choice(ids),
                                sector=common_pb2.SectorId(miner=MINER, number=next_new),
                                types=[UNSEALED],
                                primary=True,
                            ),
                            timeout=30,
                        )
                except Exception:  # noqa: BLE001 - counted, reported
                    errors += 1
                    continue
                end = time.perf_counter()
                total += 1
                if start >= record_from:
                    latencies.append(end - start)

    async def run() -> float:
        now = time.perf_counter()
        record_from = now + spec["warmup"]
        stop_at = record_from + spec["seconds"]
        await asyncio.gather(*(client(k, stop_at, record_from) for k in range(spec["clients"])))
        return spec["seconds"]

    seconds = asyncio.run(run())
    return {"latencies": latencies, "seconds": seconds, "errors": errors, "cpu": _cpu_seconds(), "total": total}


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def direct_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The servicer's work without gRPC: the index store's own `find` and `declare` (what
    StorageFindSector and StorageDeclareSector call), from `clients` concurrent tasks in one
    process, each transaction on the store's thread pool."""
    from services.index.domain import FileType, SectorId

    store = open_store(spec["url"], Path(spec["data_dir"]), threads=spec["clients"])
    # The pool, not the event loop: SQLite reads would otherwise run inline on one thread.
    store.db.inline_reads = False
    op, sectors, ids = spec["op"], spec["sectors"], spec["path_ids"]
    wanted = FileType(SEALED | CACHE)
    latencies: list[float] = []
    errors = 0
    total = 0

    async def client(k: int, stop_at: float, record_from: float) -> None:
        nonlocal errors, total
        rng = random.Random(spec["seed"] * 1000 + k)
        next_new = DECLARE_BASE + 500_000_000 + spec["seed"] * 10_000_000 + k * 100_000
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            try:
                if op == "find":
                    await store.find(SectorId(MINER, rng.randrange(sectors)), wanted, 0, False)
                else:
                    next_new += 1
                    await store.declare(rng.choice(ids), SectorId(MINER, next_new), FileType.UNSEALED, True)
            except Exception:  # noqa: BLE001 - counted, reported
                errors += 1
                continue
            end = time.perf_counter()
            total += 1
            if start >= record_from:
                latencies.append(end - start)

    async def run() -> None:
        now = time.perf_counter()
        record_from = now + spec["warmup"]
        stop_at = record_from + spec["seconds"]
        await asyncio.gather(*(client(k, stop_at, record_from) for k in range(spec["clients"])))

    asyncio.run(run())
    store.db.close()
    return {"latencies": latencies, "seconds": spec["seconds"], "errors": errors, "cpu": _cpu_seconds(), "total": total}


@dataclass
class Run:
    latencies: list[float]
    seconds: float
    errors: int
    client_cpu_us: float  # per request
    server_cpu_us: float  # per request, when a server pid was given


def run_workers(kind: str, spec: dict[str, Any], processes: int, server_pids: Sequence[int] = ()) -> Run:
    """Starts `processes` worker processes splitting spec['clients']; merges their latencies and
    measures CPU per request of the workers and (over the measured window) of the server."""
    procs = []
    per = [spec["clients"] // processes + (1 if i < spec["clients"] % processes else 0) for i in range(processes)]
    for i, clients in enumerate(per):
        child = {**spec, "clients": clients, "seed": i + 1}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.index", "--worker", kind],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        assert procs[-1].stdin is not None
        procs[-1].stdin.write(json.dumps(child))
        procs[-1].stdin.close()
    server_before = 0.0
    if server_pids:
        time.sleep(spec["warmup"])
        server_before = sum(_process_cpu(pid) for pid in server_pids)
    latencies: list[float] = []
    errors = 0
    cpu = 0.0
    total = 0
    for proc in procs:
        assert proc.stdout is not None
        out = json.loads(proc.stdout.read())
        proc.wait()
        latencies += out["latencies"]
        errors += out["errors"]
        cpu += out["cpu"]
        total += out["total"]
    server_cpu = sum(_process_cpu(pid) for pid in server_pids) - server_before
    server_us = server_cpu / len(latencies) * 1e6 if server_pids and latencies else 0.0
    return Run(latencies, spec["seconds"], errors, cpu / total * 1e6 if total else 0.0, server_us)


def result(backend: str, op: str, via: str, run: Run, load: float) -> Result:
    return Result(
        backend,
        op,
        via,
        len(run.latencies),
        run.seconds,
        *summarize(run.latencies),
        run.errors,
        load,
        run.server_cpu_us,
        run.client_cpu_us,
    )


# -- orchestration ---------------------------------------------------------------------------------


def start_index(data_dir: Path, url: str, processes: int = 1, extra_env: dict[str, str] | None = None) -> list[Any]:
    """One index process, or several sharing one port (SO_REUSEPORT, which `grpc.reuse_port`
    turns on: the kernel spreads client connections over them) and one database."""
    from services.devfleet import ServiceProcess

    env = {
        "SECTORSTORAGE_DATABASE_URL": url,
        "SECTORSTORAGE_INDEX_HEARTBEAT_TIMEOUT_S": "86400",
        "SECTORSTORAGE_LOG_LEVEL": "warning",
        **({"SECTORSTORAGE_GRPC_REUSE_PORT": "true"} if processes > 1 else {}),
        **(extra_env or {}),
    }
    first = ServiceProcess(name="index", data_dir=data_dir, env=env, secret=SECRET).start(timeout=120)
    procs = [first]
    for _ in range(processes - 1):  # the later --listen wins over ServiceProcess's port 0
        more = ServiceProcess(name="index", data_dir=data_dir, env=env, secret=SECRET, args=("--listen", first.address))
        procs.append(more.start(timeout=120))
    return procs


def measure(backend: str, args: argparse.Namespace, out: list[Result], log: Callable[[str], None]) -> None:
    from services.common.auth import Permission, create_token

    root = Path(tempfile.mkdtemp(prefix=f"bench-index-{backend}-"))
    server = None
    if backend == "postgres":
        from services.common.db.pgserver import start_postgres

        server = start_postgres(fast=False)  # durable defaults: fsync on, synchronous_commit on
        url = server.create_database("bench")
    else:
        url = ""
    try:
        started = time.monotonic()
        ids = bulk_load(url, root, args.paths, args.files)
        log(
            f"{backend}: loaded {args.paths} paths and {args.files:,} sector files in {time.monotonic() - started:.1f}s"
        )
        sectors = args.files // 2
        base = {
            "sectors": sectors,
            "path_ids": ids,
            "clients": args.clients,
            "seconds": args.seconds,
            "warmup": args.warmup,
        }
        token = create_token(SECRET.encode(), Permission.WRITE, subject="bench")
        # (label, extra environment, ops, also run the direct limit)
        variants: list[tuple[str, dict[str, str], list[str], bool]] = [("grpc", {}, args.ops, True)]
        if backend == "sqlite" and args.no_auth_variant and "find" in args.ops:
            # Same server without token verification: how much of the RPC cost is the JWT check.
            variants.append(("grpc, auth off", {"SECTORSTORAGE_AUTH_REQUIRED": "false"}, ["find"], False))
        for via, extra_env, ops, with_direct in variants:
            if args.index_procs > 1:
                via += f", {args.index_procs} processes"
            procs = start_index(root, url, args.index_procs, extra_env)
            pids = [p.proc.pid for p in procs]
            try:
                for op in ops:
                    load = os.getloadavg()[0]
                    run = run_workers(
                        "grpc", {**base, "op": op, "address": procs[0].address, "token": token}, args.client_procs, pids
                    )
                    out.append(result(backend, op, via, run, load))
                    log(f"{backend} {op} {via}: {out[-1].rate:,.0f} req/s")
                    if with_direct:
                        load = os.getloadavg()[0]
                        run = run_workers("direct", {**base, "op": op, "url": url, "data_dir": str(root)}, 1)
                        out.append(result(backend, op, "direct", run, load))
                        log(f"{backend} {op} direct: {out[-1].rate:,.0f} req/s")
            finally:
                for proc in procs:
                    proc.stop(timeout=30)
    finally:
        if server is not None:
            server.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def table(results: Sequence[Result]) -> str:
    names = {"find": "StorageFindSector", "declare": "StorageDeclareSector"}
    lines = [
        "| backend | RPC | via | req/s | p50 ms | p99 ms | gRPC / direct | index CPU µs/req | client CPU µs/req | errors | load avg |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    direct = {(r.backend, r.op): r for r in results if r.via == "direct"}
    for r in results:
        limit = direct.get((r.backend, r.op))
        ratio = f"{r.rate / limit.rate:.2f}" if limit and r.via != "direct" and limit.rate else ""
        server = f"{r.server_cpu_us:,.0f}" if r.server_cpu_us else ""
        lines.append(
            f"| {r.backend} | {names[r.op]} | {r.via} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {ratio} | {server} |"
            f" {r.client_cpu_us:,.0f} | {r.errors} | {r.load:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.index", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--ops", default="find,declare")
    parser.add_argument("--paths", type=int, default=100)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client-procs", type=int, default=2, help="processes the clients are spread over")
    parser.add_argument("--index-procs", type=int, default=1, help="index processes sharing the port and the database")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--no-auth-variant", action="store_true", help="also FindSector on SQLite with auth.required=false"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=["grpc", "direct"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(sys.stdin.read())
        result = grpc_worker(spec) if args.worker == "grpc" else direct_worker(spec)
        sys.stdout.write(json.dumps(result))
        return 0
    args.ops = [op for op in args.ops.split(",") if op]
    results: list[Result] = []

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    log(
        f"{os.cpu_count()} CPUs; {args.clients} clients over {args.client_procs} processes; {args.seconds}s per run after {args.warmup}s warm-up"
    )
    for backend in [b for b in args.backends.split(",") if b]:
        measure(backend, args, results, log)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "rate": r.rate} for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
