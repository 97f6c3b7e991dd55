"""Where a fetch's time goes (issue 20): the bare side channel, in one process, against local
copies of the same file on the same disk, interleaved round by round (best and median printed).

  cp            `cp` (copy_file_range), the copy left in the page cache
  cp + fsync    the same, then fsync of the copy; "fsync alone" is that fsync by itself: the
                writeback of the whole file, the disk's floor for a copy that must be on disk
  durable copy  the best durable local copy we know: copy_file_range in 32 MiB steps, writeback
                started after each (sync_file_range, as the fetch does), fsync at the end
  channel       bulk_client.receive from a BulkServer (sendfile -> loopback TCP -> splice into
                the file, writeback every 32 MiB, fsync): what a Fetch task wraps; its phases
                (handshake, the splice loop's wall and on-CPU time, the closing fsync) and the
                sending thread's on-CPU time are printed too (medians)
  channel xN    --streams N > 1: N connections, each a range of the file, received by N
                threads into the one file (not what the worker does: the experiment)

    python bench/fetch_profile.py [--size-mib 512] [--runs 5] [--streams 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import services.worker.bulk as bulk  # noqa: E402
import services.worker.bulk_client as bulk_client  # noqa: E402
from services.worker.faults import ServeFault  # noqa: E402
from services.worker.fsutil import start_writeback  # noqa: E402

STEP = 32 << 20


class Channel:
    """A side channel server in this process, its sending threads' on-CPU time recorded."""

    def __init__(self) -> None:
        self.book = bulk.TicketBook()
        self.sender_cpu: list[float] = []
        channel = self

        class Timed(ServeFault):
            started = 0.0

            def step(self, default: int) -> int:
                self.started = time.thread_time()
                return default

            def count(self, n: int) -> None:
                channel.sender_cpu.append(time.thread_time() - self.started)
                self.started = time.thread_time()

        self.server = bulk.BulkServer(self.book, Timed(), "127.0.0.1", 0)
        self.server.start()

    def connect(self, src: Path, offset: int, length: int) -> tuple[socket.socket, bytes]:
        ticket, _ = self.book.issue(os.open(src, os.O_RDONLY), offset, length)
        return bulk_client.connect(f"127.0.0.1:{self.server.port}"), ticket

    def stop(self) -> None:
        self.server.stop()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_copy(src: Path, dest: Path, size: int) -> None:
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.posix_fallocate(fo, 0, size)
        done = 0
        while done < size:
            n = os.copy_file_range(fi, fo, min(STEP, size - done))
            start_writeback(fo, done, n)
            done += n
        os.fsync(fo)
    finally:
        os.close(fi)
        os.close(fo)


def channel_phases(channel: Channel, src: Path, dest: Path, size: int, phases: dict[str, list[float]]) -> None:
    """bulk_client.receive, step by step, timed."""
    sent_before = len(channel.sender_cpu)
    sock, ticket = channel.connect(src, 0, size)
    with sock:
        t0 = time.perf_counter()
        bulk_client._handshake(sock, ticket, size)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)
            t1, c1 = time.perf_counter(), time.thread_time()
            bulk_client._splice(sock, fd, size, bulk_client._Progress(fd))
            t2, c2 = time.perf_counter(), time.thread_time()
            os.fsync(fd)
            t3 = time.perf_counter()
        finally:
            os.close(fd)
    phases["handshake"].append(t1 - t0)
    phases["splice loop"].append(t2 - t1)
    phases["splice loop, on-CPU"].append(c2 - c1)
    phases["closing fsync"].append(t3 - t2)
    phases["sender, on-CPU"].append(sum(channel.sender_cpu[sent_before:]))


def channel_streams(channel: Channel, src: Path, dest: Path, size: int, streams: int) -> None:
    bounds = [size * i // streams for i in range(streams + 1)]
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            start, end = bounds[i], bounds[i + 1]
            sock, ticket = channel.connect(src, start, end - start)
            with sock:
                bulk_client._handshake(sock, ticket, end - start)
                bulk_client._splice(sock, fd, end, bulk_client._Progress(fd, start))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        os.posix_fallocate(fd, 0, size)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-", dir=args.workdir))
    channel = Channel()
    try:
        src = work / "src"
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        dest = work / "dest"
        times: dict[str, list[float]] = {}
        phases: dict[str, list[float]] = {
            k: [] for k in ("handshake", "splice loop", "splice loop, on-CPU", "closing fsync", "sender, on-CPU")
        }

        def cp() -> None:
            subprocess.run(["cp", str(src), str(dest)], check=True)

        def cp_fsync() -> None:
            cp()
            t = time.perf_counter()
            fsync_path(dest)
            times.setdefault("fsync alone", []).append(time.perf_counter() - t)

        cases: dict[str, Callable[[], None]] = {
            "cp": cp,
            "cp + fsync": cp_fsync,
            "durable copy": lambda: durable_copy(src, dest, size),
            "channel": lambda: channel_phases(channel, src, dest, size, phases),
        }
        if args.streams > 1:
            cases[f"channel x{args.streams}"] = lambda: channel_streams(channel, src, dest, size, args.streams)
        for _ in range(args.runs):
            for name, case in cases.items():
                dest.unlink(missing_ok=True)
                os.sync()  # no writeback of an earlier case's file in this one
                t = time.perf_counter()
                case()
                times.setdefault(name, []).append(time.perf_counter() - t)
            if dest.read_bytes() != src.read_bytes():
                raise AssertionError("the last copy differs from the source")
        print(f"{args.size_mib} MiB, best / median of {args.runs} interleaved rounds; load {os.getloadavg()[0]:.1f}")
        for name in ("cp", "cp + fsync", "fsync alone", "durable copy", "channel", f"channel x{args.streams}"):
            if name in times:
                xs = times[name]
                print(f"  {name:22s} {min(xs):7.3f} s  {statistics.median(xs):7.3f} s")
        print("  channel phases (medians):")
        for name, xs in phases.items():
            print(f"    {name:20s} {statistics.median(xs):7.4f} s")
        cp = min(times["cp"])
        for name in ("cp + fsync", "durable copy", "channel"):
            print(f"  cp / {name:17s} {cp / min(times[name]):6.2f}x")
    finally:
        channel.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
