"""`make demo`: a whole fleet on this machine — index, manager and two workers on the embedded
default (SQLite), storage under ./.demo — then the main job: two 8 MiB sectors sealed through the
manager (AddPiece → PC1 → PC2 → C1 → C2, proofs verified, finalized), a piece read back and
compared, CheckProvable and a Window PoSt; then a summary and a clean stop.

With `--dashboard` (`make demo DASHBOARD=1`) it also starts the fleet dashboard
(`sectorstorage-web`, docs/dashboard.md) before the job, prints its URL and password, and after
the job leaves the fleet and the dashboard up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.names import task_short
from services.cli.sealing import SealedSector, read_piece, seal_sector
from services.common.auth import Permission, create_token
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import (
    common_pb2,
    manager_pb2,
    manager_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from services.devfleet import LocalFleet, ServiceProcess

MINER = 1000
SECTOR_SIZE = 8 << 20
PROOF = common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1
WINDOW_POST = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_8MIB_V1
# Tickets and seeds are chain randomness in a real deployment; 32 bytes in the BLS12-381 field.
TICKET = hashlib.sha256(b"demo ticket").digest()[:31] + b"\x00"
SEED = hashlib.sha256(b"demo seed").digest()[:31] + b"\x00"


def health_of(address: str) -> str:
    with sync_channel(address, None) as channel:  # TLS too when SECTORSTORAGE_TLS_* is set
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def piece_bytes(number: int) -> bytes:
    """Deterministic, incompressible-looking data filling a whole 8 MiB sector (unpadded)."""
    size = SECTOR_SIZE // 128 * 127
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"demo piece {number} block {counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def attach_storage(worker: ServiceProcess, token: str, root: Path) -> None:
    with sync_channel(worker.address, token) as channel:
        worker_pb2_grpc.WorkerServiceStub(channel).StorageAttachLocal(
            worker_pb2.StorageAttachLocalRequest(
                path=str(root), init=worker_pb2.StoragePathConfig(can_seal=True, can_store=True, weight=10)
            ),
            timeout=30,
        )


def wait_for_workers(stub: manager_pb2_grpc.ManagerServiceStub, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = stub.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
        if sum(1 for w in stats if w.state.connected and w.info.paths) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{count} workers did not register with storage within {timeout:.0f}s")


def run_job(manager: ServiceProcess, workers: list[ServiceProcess], token: str, root: Path) -> bool:
    """The main job; returns whether every check passed."""
    for i, worker in enumerate(workers, start=1):
        attach_storage(worker, token, (root / f"storage-{i}").resolve())
    with sync_channel(manager.address, token) as channel:
        stub = manager_pb2_grpc.ManagerServiceStub(channel)
        wait_for_workers(stub, len(workers))
        # Both sectors at once: the scheduler spreads them over the two workers (each sector's
        # later steps follow its files).
        print("==> sealing sectors 1 and 2 (8 MiB each) at once", flush=True)

        def seal(number: int) -> SealedSector:
            ref = common_pb2.SectorRef(id=common_pb2.SectorId(miner=MINER, number=number), proof_type=PROOF)
            return seal_sector(
                stub,
                ref,
                piece_bytes(number),
                TICKET,
                SEED,
                progress=lambda task, sec: print(f"    sector {number}  {task:<11} {sec:6.2f}s", flush=True),
            )

        with ThreadPoolExecutor(2) as pool:
            sealed: list[SealedSector] = list(pool.map(seal, (1, 2)))
        for result in sealed:
            print(f"    sector {result.ref.id.number}  piece {result.piece.piece_cid}")
            print(f"              commD {result.commitments.unsealed_cid}")
            print(f"              commR {result.commitments.sealed_cid}")
            print(f"              proof {len(result.proof)} bytes, verified: {result.verified}")
        ok = all(s.verified for s in sealed)

        first = sealed[0]
        offset, size = 127 * 8_000, 127 * 512  # ReadPiece ranges are in whole 127-byte fr32 blocks
        print(f"==> reading {size} bytes at offset {offset} of sector 1's piece back", flush=True)
        data, did_unseal = read_piece(stub, first.ref, offset, size, TICKET, first.commitments.unsealed_cid)
        matches = data == piece_bytes(1)[offset : offset + size]
        print(
            f"    {'identical to the original' if matches else 'DIFFERENT from the original'} (unsealed first: {did_unseal})"
        )
        ok &= matches

        proving = [common_pb2.ProvingSector(sector=s.ref, comm_r=s.commitments.comm_r) for s in sealed]
        print("==> CheckProvable", flush=True)
        bad = stub.CheckProvable(
            manager_pb2.CheckProvableRequest(proof_type=WINDOW_POST, sectors=proving, expensive=True), timeout=300
        ).bad_sectors
        print(
            f"    {len(proving) - len(bad)}/{len(proving)} sectors provable"
            + "".join(f"; {b.sector.number}: {b.reason}" for b in bad)
        )
        ok &= not bad

        print("==> Window PoSt", flush=True)
        randomness = hashlib.sha256(b"demo post randomness").digest()[:31] + b"\x00"
        post = stub.GenerateWindowPoSt(
            manager_pb2.GenerateWindowPoStRequest(proof_type=WINDOW_POST, randomness=randomness, sectors=proving),
            timeout=300,
        )
        check = stub.VerifyWindowPoSt(
            manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=proving, proofs=post.proofs), timeout=300
        )
        print(f"    {len(post.proofs)} proof(s) over {len(proving)} sectors, verified: {check.valid}")
        ok &= check.valid and not post.skipped

        runs = stub.TaskHistory(manager_pb2.TaskHistoryRequest(page_size=100), timeout=30).runs
        stats = stub.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=30).workers
        print(f"==> {len(runs)} tasks ran on {len({r.worker_id for r in runs})} of {len(stats)} workers")
        for stat in stats:
            mine = [r for r in runs if r.worker_id == stat.info.worker_id]
            counts = Counter(task_short(r.task_type) for r in mine)
            sectors = sorted({r.sector.id.number for r in mine})
            what = ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) if mine else "nothing"
            print(
                f"    {stat.info.name or stat.info.hostname or stat.info.worker_id}: {what}"
                + (f" (sectors {', '.join(map(str, sectors))})" if sectors else "")
            )
        if len({r.worker_id for r in runs}) < len(stats):
            print("    (a sector's later tasks run where its files are, so a worker that got no AddPiece gets no work)")
    return ok


def start_dashboard(fleet: LocalFleet, manager: ServiceProcess, index: ServiceProcess, root: Path) -> ServiceProcess:
    """The dashboard on the demo fleet, with a read token and a fresh password (both in files
    under the demo's root, mode 0600, as an operator would keep them)."""
    files = {
        "web.token": create_token(fleet.secret.encode(), Permission.READ, subject="dashboard"),
        "web.password": secrets.token_urlsafe(12),
    }
    for name, value in files.items():
        path = root / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
    web = fleet.start(
        "web",
        "web",
        "--manager",
        manager.address,
        "--index",
        index.address,
        "--token-file",
        str((root / "web.token").resolve()),
        "--password-file",
        str((root / "web.password").resolve()),
    )
    print(
        f"dashboard: http://{web.address}/  (password {files['web.password']}, also in {root}/web.password)", flush=True
    )
    return web


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def wait_for_ctrl_c(fleet: LocalFleet) -> None:
    """Until Ctrl-C or SIGTERM (or a service of the fleet exits on its own). Both handlers are
    set here rather than inherited: a process started in the background by a non-interactive
    shell inherits SIGINT *ignored*, and Python then installs no KeyboardInterrupt for it, so
    Ctrl-C (a `kill -INT`) would never stop the demo."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    print("the fleet and the dashboard stay up: press Ctrl-C to stop them", flush=True)
    try:
        while all(p.proc is not None and p.proc.poll() is None for p in fleet.processes):
            time.sleep(0.5)
        print("a service stopped on its own: stopping the others", flush=True)
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping the fleet", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sectorstorage-demo", description=__doc__)
    parser.add_argument(
        "--root", type=Path, default=Path(".demo"), help="where the fleet keeps its state (wiped first)"
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="also start the dashboard, print its URL, and keep everything up after the job until Ctrl-C",
    )
    args = parser.parse_args(argv)
    if args.root.exists():
        shutil.rmtree(args.root)
    fleet = LocalFleet(args.root)
    ok = True
    try:
        index = fleet.start("index", "index")
        manager = fleet.start("manager", "manager", "--index", index.address)
        workers = [
            fleet.start(
                "worker",
                f"worker-{i}",
                "--manager",
                manager.address,
                "--index",
                index.address,
                "--name",
                f"demo-worker-{i}",
            )
            for i in (1, 2)
        ]
        print(f"sectorstorage {version('sectorstorage')}; fleet state in {args.root}/")
        print(f"{'service':<10} {'address':<22} {'metrics':<22} health")
        for proc in [index, manager, *workers]:
            print(
                f"{proc.data_dir.name:<10} {proc.address:<22} {proc.metrics_address or '-':<22} {health_of(proc.address)}"
            )
        ok &= all(health_of(p.address) == "SERVING" for p in fleet.processes)
        if args.dashboard:
            start_dashboard(fleet, manager, index, args.root)
        token = create_token(fleet.secret.encode(), Permission.ADMIN, subject="demo")
        ok &= run_job(manager, workers, token, args.root)
        if args.dashboard:
            print("demo job OK" if ok else "demo job FAILED", flush=True)
            wait_for_ctrl_c(fleet)
    except (Exception, grpc.RpcError) as exc:  # the demo must always stop what it started
        print(f"demo failed: {exc}", file=sys.stderr)
        ok = False
    finally:
        codes = fleet.stop()
        print("stopped:", ", ".join(f"{name} (exit {code})" for name, code in codes))
        ok &= all(code == 0 for _, code in codes)
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
