"""Worker benchmarks, each against its baseline, on real processes over loopback:

  fetch     a 512 MiB sealed file fetched by worker B from worker A (the Fetch task: index
            lookup, lock, OpenTransfer + the bulk side channel, fsync, rename, declare) vs `cp`
            of the same file on this disk (page cache warm, as the fetch's source read is), and
            vs `cp` + fsync of the copy: the like-for-like baseline, since a fetch may not
            publish a file before its bytes are on disk and `cp` alone leaves the writeback to
            the kernel for later. The fsync of cp's copy is also timed alone: the disk's floor
            for any durable copy, which bounds what a fetch can reach against plain `cp`. Also
            the on-CPU time of both workers' processes per fetch (and of `cp`), and the same
            Fetch by worker D, which receives over two connections (bulk_streams = 2), and by
            worker C, which has the side channel off (the gRPC stream).
  addpiece  a 512 MiB piece (532,676,608 unpadded bytes) streamed into AddPiece (fr32 padding
            into the unsealed file + commP) vs rust_core's in-memory fr32_pad + piece_commitment
            of the same bytes.

    python bench/worker.py [--size-mib 512] [--runs 3] [--workdir DIR]

Each figure is the best of --runs interleaved rounds (baseline and measured alternate, so a
busy moment hits both); prints the ratios and the load average. docs/benchmarks.md records runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

import rust_core  # noqa: E402
from services.common.auth import Permission, create_token  # noqa: E402
from services.common.client import aio_channel, sync_channel  # noqa: E402
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc  # noqa: E402
from services.devfleet import LocalFleet, ServiceProcess  # noqa: E402
from services.worker.wire import decode_chunk_response  # noqa: E402

MINER = 1000
PROOF_BY_MIB = {
    8: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1,
    512: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1,
}


class Fleet:
    """The bench's services (services.devfleet.LocalFleet) and an admin token for them."""

    def __init__(self, root: Path) -> None:
        self.processes = LocalFleet(root, env={"SECTORSTORAGE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning")})
        self.root = root
        self.secret = self.processes.secret
        self.token = create_token(self.secret.encode(), Permission.ADMIN, subject="bench")

    def start(self, name: str, label: str, *args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        return self.processes.start(name, label, *args, env=env)

    def stub(self, proc: ServiceProcess) -> worker_pb2_grpc.WorkerServiceStub:
        return worker_pb2_grpc.WorkerServiceStub(sync_channel(proc.address, self.token))

    def stop(self) -> None:
        self.processes.close()


def attach(stub: worker_pb2_grpc.WorkerServiceStub, root: Path, seal: bool, store: bool) -> str:
    reply = stub.StorageAttachLocal(
        worker_pb2.StorageAttachLocalRequest(
            path=str(root), init=worker_pb2.StoragePathConfig(can_seal=seal, can_store=store)
        ),
        timeout=60,
    )
    return reply.path.info.id


def assignment(number: int) -> worker_pb2.TaskAssignment:
    call = common_pb2.CallId(sector=common_pb2.SectorId(miner=MINER, number=number), id=str(uuid.uuid4()))
    return worker_pb2.TaskAssignment(call_id=call, attempt=1)


def wait_result(
    stub: worker_pb2_grpc.WorkerServiceStub, call: common_pb2.CallId, timeout: float = 600
) -> worker_pb2.StoredCallResult:
    """No manager in the bench: results stay in the worker's call store; poll the pull side
    every 5 ms (at most that much is added to a measured task; a ListCallResults costs the
    worker well under a millisecond)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in stub.ListCallResults(worker_pb2.ListCallResultsRequest(), timeout=30):
            if item.result.call_id.id == call.id:
                stub.AckCallResult(worker_pb2.AckCallResultRequest(call_ids=[call]), timeout=30)
                if item.result.HasField("error"):
                    raise RuntimeError(f"task failed: {item.result.error.message}")
                return item.result
        time.sleep(0.005)
    raise TimeoutError(call.id)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / (1 << 20)


def bench_fetch(fleet: Fleet, index: ServiceProcess, work: Path, size_mib: int, runs: int) -> None:
    size = size_mib << 20
    a = fleet.start("worker", "worker-a", "--index", index.address)
    b = fleet.start("worker", "worker-b", "--index", index.address)
    c = fleet.start("worker", "worker-c", "--index", index.address, env={"SECTORSTORAGE_WORKER_BULK_TRANSFER": "false"})
    d = fleet.start("worker", "worker-d", "--index", index.address, env={"SECTORSTORAGE_WORKER_BULK_STREAMS": "2"})
    sa, sb, sc, sd = fleet.stub(a), fleet.stub(b), fleet.stub(c), fleet.stub(d)
    attach(sa, work / "a", seal=True, store=True)
    attach(sb, work / "b", seal=True, store=False)
    attach(sc, work / "c", seal=True, store=False)
    attach(sd, work / "d", seal=True, store=False)
    number = 1
    name = f"s-t0{MINER}-{number}"
    sealed = work / "a" / "sealed" / name
    with open(sealed, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    sa.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(), timeout=60)
    ref = common_pb2.SectorRef(id=common_pb2.SectorId(miner=MINER, number=number), proof_type=PROOF_BY_MIB[size_mib])

    cp_times, cp_sync_times, fetch_times, grpc_times, stream_times, split_times = [], [], [], [], [], []
    fsync_times, cp_cpu, fetch_cpu_a, fetch_cpu_b = [], [], [], []
    for _ in range(runs):
        # The transport alone: worker A's ReadSectorFile stream read by this process and dropped.
        t = time.perf_counter()
        received = asyncio.run(drain_stream(a.address, fleet.token, ref.id))
        stream_times.append(time.perf_counter() - t)
        assert received == size
        target = work / "cp-copy"
        children = cpu_of_children()
        t = time.perf_counter()
        subprocess.run(["cp", str(sealed), str(target)], check=True)
        cp_times.append(time.perf_counter() - t)
        cp_cpu.append(cpu_of_children() - children)
        target.unlink()
        t = time.perf_counter()
        subprocess.run(["cp", str(sealed), str(target)], check=True)
        synced = time.perf_counter()
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        fsync_times.append(time.perf_counter() - synced)
        cp_sync_times.append(time.perf_counter() - t)
        target.unlink()

        for stub, label, times in ((sb, "b", fetch_times), (sd, "d", split_times), (sc, "c", grpc_times)):
            call = assignment(number)
            cpu_a, cpu_b = cpu_of(a), cpu_of(b)
            t = time.perf_counter()
            stub.Fetch(
                worker_pb2.FetchRequest(
                    assignment=call,
                    sector=ref,
                    types=[common_pb2.SECTOR_FILE_TYPE_SEALED],
                    path_type=common_pb2.PATH_TYPE_SEALING,
                    mode=worker_pb2.FETCH_MODE_COPY,
                ),
                timeout=30,
            )
            wait_result(stub, call.call_id)
            times.append(time.perf_counter() - t)
            if label == "b":
                fetch_cpu_a.append(cpu_of(a) - cpu_a)
                fetch_cpu_b.append(cpu_of(b) - cpu_b)
            fetched = work / label / "sealed" / name
            assert fetched.stat().st_size == size, "fetched file has the wrong size"
            stub.Remove(
                worker_pb2.WorkerServiceRemoveRequest(sector=ref.id, types=[common_pb2.SECTOR_FILE_TYPE_SEALED]),
                timeout=60,
            )

    cp, cp_sync, fetch, via_grpc, stream, fsync_alone, split = (
        min(x) for x in (cp_times, cp_sync_times, fetch_times, grpc_times, stream_times, fsync_times, split_times)
    )
    print(f"fetch {size_mib} MiB sealed file, worker B <- worker A over loopback (best of {runs}; load {load()})")
    print(f"  Fetch task (incl. fsync)      {fetch:7.3f} s  {rate(size, fetch):8.1f} MiB/s   (side channel)")
    print(
        f"  Fetch task, two connections   {split:7.3f} s  {rate(size, split):8.1f} MiB/s   (worker D, bulk_streams = 2;"
        f" median {median(split_times):.3f} s against {median(fetch_times):.3f} s)"
    )
    print(
        f"  Fetch task, gRPC stream       {via_grpc:7.3f} s  {rate(size, via_grpc):8.1f} MiB/s   (worker C, bulk_transfer = false)"
    )
    print(
        f"  ReadSectorFile stream alone   {stream:7.3f} s  {rate(size, stream):8.1f} MiB/s   (bench process reads, discards)"
    )
    print(f"  cp (page cache, no fsync)     {cp:7.3f} s  {rate(size, cp):8.1f} MiB/s")
    print(f"  cp + fsync                    {cp_sync:7.3f} s  {rate(size, cp_sync):8.1f} MiB/s")
    print(
        f"  fsync of cp's copy alone      {fsync_alone:7.3f} s  {rate(size, fsync_alone):8.1f} MiB/s"
        "   (writeback of the whole file: the disk's floor for a durable copy)"
    )
    print(
        f"  on-CPU per fetch              {median(fetch_cpu_b):7.3f} s receiver (worker B), {median(fetch_cpu_a):.3f} s"
        f" sender (worker A); cp {median(cp_cpu):.3f} s (medians)"
    )
    print(
        f"  ratio fetch / (cp + fsync)    {cp_sync / fetch:7.2f}x   (like for like: both copies on disk; target >= 0.8)"
    )
    print(f"  ratio fetch / cp              {cp / fetch:7.2f}x   (cp's bytes still in the page cache)")
    print(
        f"  ceiling of fetch / cp         {cp / max(cp, fsync_alone):7.2f}x   (cp / max(cp, fsync alone): a copy"
        " that is on disk when it ends, with its writeback fully overlapped)"
    )
    print(f"  ratio gRPC fetch / cp         {cp / via_grpc:7.2f}x")


def cpu_of(proc: ServiceProcess) -> float:
    """On-CPU seconds (user + system, all threads) of a service process so far."""
    assert proc.proc is not None
    with open(f"/proc/{proc.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


async def drain_stream(address: str, token: str, sector: common_pb2.SectorId) -> int:
    async with aio_channel(address, token) as channel:
        call = channel.unary_stream(
            "/sectorstorage.v1.WorkerService/ReadSectorFile",
            request_serializer=worker_pb2.ReadSectorFileRequest.SerializeToString,
            response_deserializer=None,
        )
        received = 0
        async for raw in call(worker_pb2.ReadSectorFileRequest(sector=sector, type=common_pb2.SECTOR_FILE_TYPE_SEALED)):
            received += len(decode_chunk_response(raw).data)
        return received


def piece_messages(
    header: worker_pb2.WorkerServiceAddPieceHeader, data: bytes
) -> Iterator[worker_pb2.WorkerServiceAddPieceRequest]:
    yield worker_pb2.WorkerServiceAddPieceRequest(header=header)
    chunk = 1 << 20
    view = memoryview(data)
    for offset in range(0, len(data), chunk):
        yield worker_pb2.WorkerServiceAddPieceRequest(
            chunk=common_pb2.Chunk(offset=offset, data=bytes(view[offset : offset + chunk]))
        )


def bench_addpiece(fleet: Fleet, index: ServiceProcess, work: Path, size_mib: int, runs: int) -> None:
    size = size_mib << 20
    unpadded = size // 128 * 127
    data = os.urandom(unpadded)
    w = fleet.start("worker", "worker-ap", "--index", index.address)
    stub = fleet.stub(w)
    attach(stub, work / "ap", seal=True, store=False)
    mem_times, commp_times, ap_times = [], [], []
    for run in range(runs):
        t = time.perf_counter()
        rust_core.fr32_pad(data)
        expected = rust_core.piece_commitment(data)
        mem_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        rust_core.piece_commitment(data)
        commp_times.append(time.perf_counter() - t)

        number = 100 + run
        call = assignment(number)
        header = worker_pb2.WorkerServiceAddPieceHeader(
            assignment=call,
            sector=common_pb2.SectorRef(
                id=common_pb2.SectorId(miner=MINER, number=number), proof_type=PROOF_BY_MIB[size_mib]
            ),
            piece_size=unpadded,
        )
        t = time.perf_counter()
        stub.AddPiece(piece_messages(header, data), timeout=600)
        ap_times.append(time.perf_counter() - t)
        result = wait_result(stub, call.call_id)
        assert result.piece.commp == expected, "AddPiece commP differs from rust_core's"
        stub.Remove(worker_pb2.WorkerServiceRemoveRequest(sector=header.sector.id), timeout=60)

    mem, commp, ap = (min(x) for x in (mem_times, commp_times, ap_times))
    print(f"AddPiece of a {size_mib} MiB piece ({unpadded} unpadded bytes; best of {runs}; load {load()})")
    print(f"  AddPiece RPC (stream, pad, write, commP)   {ap:7.3f} s  {rate(unpadded, ap):8.1f} MiB/s")
    print(f"  rust_core in memory: fr32_pad + commP      {mem:7.3f} s  {rate(unpadded, mem):8.1f} MiB/s")
    print(f"  rust_core in memory: commP alone           {commp:7.3f} s  {rate(unpadded, commp):8.1f} MiB/s")
    print(f"  ratio AddPiece / in-memory pad+commP       {mem / ap:7.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512, choices=sorted(PROOF_BY_MIB))
    parser.add_argument("--runs", type=int, default=5, help="rounds; the best is reported (the machine may be shared)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where files go (default: a temporary dir on /tmp's disk)"
    )
    parser.add_argument("--only", choices=["fetch", "addpiece"], default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-worker-", dir=args.workdir))
    fleet = Fleet(work / "fleet")
    print(f"cpus {os.cpu_count()}, workdir {work}, rust_core {rust_core.__version__}")
    try:
        index = fleet.start("index", "index")
        if args.only in (None, "fetch"):
            bench_fetch(fleet, index, work, args.size_mib, args.runs)
        if args.only in (None, "addpiece"):
            bench_addpiece(fleet, index, work, args.size_mib, args.runs)
    except grpc.RpcError as exc:
        print(f"bench failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        fleet.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
