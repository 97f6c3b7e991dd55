"""`make demo`: a whole fleet on this machine — index, manager and two workers on the embedded
default (SQLite), storage under ./.demo — then the main job, a summary, and a clean stop.

Each step reports what it did; a step whose service RPCs are not implemented yet says so and the
demo goes on, so the demo shows exactly how far the system works today.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import rust_core
from services.cli.local_fleet import ServiceProcess


@dataclass
class Fleet:
    root: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    processes: list[ServiceProcess] = field(default_factory=list)

    def start(self, name: str, label: str, *args: str) -> ServiceProcess:
        proc = ServiceProcess(name=name, data_dir=self.root / label, args=args, secret=self.secret, env={"SECTORSTORAGE_LOG_LEVEL": "warning"})
        proc.start()
        self.processes.append(proc)
        return proc

    def stop(self) -> list[tuple[str, int]]:
        codes = []
        for proc in reversed(self.processes):
            codes.append((proc.data_dir.name, proc.stop()))
        return codes


def health_of(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def step(title: str, action: Callable[[], str]) -> bool:
    start = time.monotonic()
    print(f"==> {title}", flush=True)
    try:
        outcome = action()
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            print(f"    skipped: {exc.details()}")
            return True
        print(f"    FAILED: {exc.code().name}: {exc.details()}")
        return False
    print(f"    {outcome} ({time.monotonic() - start:.2f}s)")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sectorstorage-demo", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(".demo"), help="where the fleet keeps its state (wiped first)")
    args = parser.parse_args(argv)
    if args.root.exists():
        shutil.rmtree(args.root)
    fleet = Fleet(args.root)
    ok = True
    try:
        index = fleet.start("index", "index")
        manager = fleet.start("manager", "manager", "--index", index.address)
        workers = [
            fleet.start("worker", f"worker-{i}", "--manager", manager.address, "--index", index.address, "--name", f"demo-worker-{i}")
            for i in (1, 2)
        ]
        print(f"rust_core {rust_core.__version__}; fleet state in {args.root}/")
        print(f"{'service':<10} {'address':<22} {'metrics':<22} health")
        for proc in [index, manager, *workers]:
            print(f"{proc.data_dir.name:<10} {proc.address:<22} {proc.metrics_address or '-':<22} {health_of(proc.address)}")
        ok &= all(health_of(p.address) == "SERVING" for p in fleet.processes)
    except Exception as exc:  # the demo must always stop what it started
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
