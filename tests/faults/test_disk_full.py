"""A worker whose disk fills up in the middle of a task: a real small file system (a tmpfs) is
its only sealing path; the 8 MiB sector's PC1 reserves its space there, and then another writer
takes the rest of the disk, so PC1's writes hit ENOSPC. The task fails cleanly as
ALLOCATE_SPACE, its reservation is freed, no partial file is left on the full path, and the
manager retries PC1 on the worker with room, where the sector seals and verifies.

Needs root to mount the tmpfs: skipped, saying so, where mounting is not allowed.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, worker_pb2
from tests.faults.helpers import lapsed_locks, wait_no_locks
from tests.support.fleet import Fleet, WorkerSpec, summary
from tests.support.sectors import P8M, SEED, TICKET, piece_data, sector

MiB = 1 << 20
# 8 MiB unsealed + PC1's reservation (sealed 8 MiB + cache 14.1 x 8 MiB) and a little slack.
FS_SIZE = 136 * MiB


def mount_tmpfs(where: Path, size: int) -> str | None:
    """Mounts a tmpfs of `size` bytes; returns why not where that is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "mounting a small file system needs root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    return None if done.returncode == 0 else f"mount -t tmpfs not allowed here: {done.stderr.strip()}"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small-fs"
    why = mount_tmpfs(where, FS_SIZE)
    if why:
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path) -> Path:
    """Another writer takes every free byte of the file system."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
        while free > 0:
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, free)
            except OSError:
                free //= 2
            else:
                free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    finally:
        os.close(fd)
    return filler


def test_disk_full_mid_pc1_fails_cleanly_and_retries_where_there_is_room(fleet: Fleet, small_fs: Path) -> None:
    # "tiny" holds the unsealed file (only it runs AddPiece), so PC1 goes there first.
    fleet.add_worker(WorkerSpec("tiny", cpus=2, task_types=["AP", "PC1"], store=small_fs))
    fleet.add_worker(WorkerSpec("roomy", cpus=2, task_types=["PC1", "PC2", "C1", "C2", "FIN", "GET"]))
    fleet.wait_registered()
    stub = fleet.stub()
    tiny = fleet.worker_stub("tiny")
    [tiny_path] = tiny.Paths(worker_pb2.PathsRequest(), timeout=10).paths
    ref = sector(1, P8M)
    data = piece_data(1, P8M)
    piece = add_piece(stub, ref, data)

    def reserved() -> int:
        return int(tiny.StatPath(worker_pb2.StatPathRequest(storage_id=tiny_path.info.id), timeout=10).stat.reserved)

    future = stub.SealPreCommit1.future(
        manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=120
    )
    # The moment PC1 holds its reservation on the small disk, the disk fills up.
    deadline = time.monotonic() + 60
    while reserved() == 0:
        assert time.monotonic() < deadline and not future.done(), "PC1 never reserved space on the small disk"
        time.sleep(0.005)
    fill(small_fs)
    p1 = future.result()

    runs = sorted(fleet.history(task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1), key=lambda r: r.attempt)
    described = summary(fleet, runs)
    assert [fleet.name_of(r.worker_id) for r in runs][0] == "tiny", described
    first = runs[0]
    assert first.outcome == manager_pb2.TASK_OUTCOME_FAILED, described
    assert first.error.code == common_pb2.TASK_ERROR_CODE_ALLOCATE_SPACE, described
    assert "No space left on device" in first.error.message, described
    # The retry goes to the worker with room at once (not back to the full holder).
    assert [(fleet.name_of(r.worker_id), r.outcome) for r in runs[1:]] == [
        ("roomy", manager_pb2.TASK_OUTCOME_SUCCEEDED)
    ], described

    # The failed task left nothing behind on the full disk, and its reservation is gone.
    leftovers = [p.relative_to(small_fs) for p in small_fs.rglob("s-t01000-1*") if "unsealed" not in p.parts]
    assert not leftovers, leftovers
    assert reserved() == 0

    # The sector goes on from the worker with room and seals.
    p2 = stub.SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=120
    )
    comm = p2.commitments
    c1 = stub.SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=comm.comm_r, comm_d=comm.comm_d
        ),
        timeout=120,
    )
    c2 = stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=120)
    verdict = stub.VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=ref, comm_r=comm.comm_r, comm_d=comm.comm_d, ticket=TICKET, seed=SEED, proof=c2.proof
        ),
        timeout=60,
    )
    assert verdict.valid
    assert not lapsed_locks(fleet) and not wait_no_locks(fleet, 10)
    print("disk full:", described)
