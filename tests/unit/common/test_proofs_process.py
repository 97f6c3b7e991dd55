"""The filecoin backend's calls in killable child processes (services/common/proofs_process.py):
the same results as the library in-process, a cancelled C2 really stopped (its process gone from
/proc within moments, not after the minute the call takes), a child killed from outside failing
only its call, the library's exceptions keeping their types, and no proving process outliving
a killed worker.

C2 of 2 KiB loads 1.1 GB of Groth16 parameters (tens of seconds): each test that starts one stops
it long before it ends. The parameters are the ones tests/unit/rust_filecoin uses (random, NOT the
network's trusted setup), generated there when missing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rust_core

rust_filecoin = pytest.importorskip(
    "rust_filecoin",
    reason="rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`",
)

from services.common.proofs_process import CALLS, ChildDied, ChildSettings, ProofsProcesses  # noqa: E402
from services.worker.proofs_filecoin import STAGED_REPLICA, FilecoinProofs  # noqa: E402
from services.worker.sealer import Piece  # noqa: E402
from tests.support.paths import filecoin_param_cache as param_cache
from tests.support.procstat import cpu_ticks, gone  # noqa: E402

pytestmark = pytest.mark.slow

SIZE = 2048
PROVER = bytes(range(32))
TICKET = bytes([0x11] * 32)
SEED = bytes([0x22] * 32)


@pytest.fixture(scope="module")
def settings() -> ChildSettings:
    cache = param_cache()
    rust_filecoin.configure(cache, cache / "parents", generate_up_to=SIZE)
    rust_filecoin.ensure_parameters(SIZE, "seal")
    return ChildSettings(str(cache), str(cache / "parents"), 0)


@pytest.fixture
def processes(settings: ChildSettings) -> Iterator[ProofsProcesses]:
    p = ProofsProcesses(settings, stopped=rust_core.Cancelled)  # as the worker makes them
    yield p
    p.close()


def seal(root: Path, proofs: FilecoinProofs, number: int) -> tuple[list[Piece], bytes, bytes, Path, Path]:
    """AddPiece (one piece filling the sector), PC1 and PC2 through `proofs`."""
    root.mkdir(parents=True, exist_ok=True)
    piece = root / "piece"
    piece.write_bytes(random.Random(number).randbytes(2032))
    unsealed, sealed, cache = root / "unsealed", root / "sealed", root / "cache"
    cache.mkdir()
    padded, comm_p = rust_filecoin.add_piece(SIZE, piece, unsealed, 2032)
    pieces = [Piece(padded, bytes(comm_p))]
    p1 = proofs.pre_commit1(SIZE, cache, unsealed, PROVER, number, TICKET, pieces)
    comm_r, comm_d = proofs.pre_commit2(p1, cache, sealed, "cpu")
    return pieces, comm_r, comm_d, cache, sealed


def commit1(root: Path, number: int) -> bytes:
    """A C1 output made in this process (fast), for the C2s the tests stop."""
    proofs = FilecoinProofs()
    pieces, comm_r, comm_d, cache, sealed = seal(root, proofs, number)
    return proofs.commit1(SIZE, cache, sealed, PROVER, number, TICKET, SEED, pieces, comm_r, comm_d)


class Running:
    """A call in a thread of its own: what it returned or raised, and when."""

    def __init__(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn: Any, args: Any, kwargs: Any) -> None:
        try:
            self.result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            self.error = exc
        self.ended_at = time.monotonic()


def busy_child(processes: ProofsProcesses, timeout_s: float = 20.0) -> int:
    """The pid of the child running a call once it has used some CPU (it really started)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = processes.children()
        if pids and cpu_ticks(pids[0]) > 20:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("no proofs process started working")


def test_sealing_through_the_processes_equals_the_library_in_process(
    processes: ProofsProcesses, tmp_path: Path
) -> None:
    isolated = FilecoinProofs(processes)
    pieces, comm_r, comm_d, cache, sealed = seal(tmp_path / "isolated", isolated, 7)
    assert (cache / STAGED_REPLICA).is_file()
    _, direct_r, direct_d, _, direct_sealed = seal(tmp_path / "direct", FilecoinProofs(), 7)
    assert (comm_r, comm_d) == (direct_r, direct_d)
    assert sealed.read_bytes() == direct_sealed.read_bytes()
    c1 = isolated.commit1(SIZE, cache, sealed, PROVER, 7, TICKET, SEED, pieces, comm_r, comm_d)
    assert rust_filecoin.blob_backend(c1) == "filecoin"
    # One child served every call, one at a time, and waits for the next.
    assert len(processes.children()) == 1


def test_a_cancelled_c2_stops_its_process_at_once(processes: ProofsProcesses, tmp_path: Path) -> None:
    c1 = commit1(tmp_path, 8)
    token = rust_core.CancelToken()
    run = Running(FilecoinProofs(processes).commit2, c1, PROVER, 8, "cpu", token)
    pid = busy_child(processes)
    time.sleep(0.5)
    assert run.ended_at is None, "C2 ended before it could be stopped"
    cancelled_at = time.monotonic()
    token.cancel()
    run.thread.join(5)
    assert isinstance(run.error, rust_core.Cancelled), run.error
    assert run.ended_at is not None and run.ended_at - cancelled_at < 0.5
    assert gone(pid, 0.5), f"the C2 process {pid} still runs"
    assert processes.children() == []


def test_a_child_killed_from_outside_fails_only_its_call(processes: ProofsProcesses, tmp_path: Path) -> None:
    c1 = commit1(tmp_path / "c1", 9)
    run = Running(FilecoinProofs(processes).commit2, c1, PROVER, 9, "cpu")
    pid = busy_child(processes)
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    run.thread.join(5)
    assert isinstance(run.error, ChildDied), run.error
    assert "SIGKILL" in str(run.error) and "memory" in str(run.error)
    # The next call gets a new process and works.
    _, comm_r, _, _, _ = seal(tmp_path / "next", FilecoinProofs(processes), 9)
    assert len(comm_r) == 32
    assert processes.children() and pid not in processes.children()


def test_the_library_errors_keep_their_types(
    processes: ProofsProcesses, settings: ChildSettings, tmp_path: Path
) -> None:
    # An emulated PC1 output: BackendMismatch (a ValueError: the task fails PERMANENT).
    src, unsealed = tmp_path / "piece", tmp_path / "unsealed"
    src.write_bytes(bytes(range(127)) * 16)
    size, commp = rust_core.add_piece_file(src, unsealed)
    emulated = rust_core.seal_pre_commit_phase1(
        SIZE, tmp_path / "ecache", unsealed, PROVER, 1, TICKET, [(size, bytes(commp))]
    )
    (tmp_path / "ecache" / STAGED_REPLICA).write_bytes(unsealed.read_bytes()[:SIZE])
    before = sorted(os.listdir(tmp_path / "ecache"))
    with pytest.raises(rust_filecoin.BackendMismatch, match="emulated"):
        FilecoinProofs(processes).pre_commit2(emulated, tmp_path / "ecache", tmp_path / "sealed", "cpu")
    # The failed PC2 left PC1's cache as it was.
    assert sorted(n for n in os.listdir(tmp_path / "ecache") if not n.startswith(rust_core.TRASH_PREFIX)) == before
    # A file the library cannot read: OSError with its text.
    with pytest.raises(OSError):
        processes.call(
            "unseal_range",
            SIZE,
            tmp_path / "nope",
            tmp_path / "nope",
            tmp_path / "out",
            PROVER,
            1,
            bytes(32),
            TICKET,
            0,
            2032,
        )
    # A child whose parameter cache lacks the files: MissingParameters naming the file.
    empty = tmp_path / "no-params"
    bare = ProofsProcesses(ChildSettings(str(empty), settings.parent_cache, 0))
    try:
        c1 = commit1(tmp_path / "c1", 10)
        with pytest.raises(
            rust_filecoin.MissingParameters, match=rf"missing Groth16 parameters file {empty}/.*\.params"
        ):
            bare.call("seal_commit_phase2", c1, PROVER, 10)
    finally:
        bare.close()
    with pytest.raises(ValueError, match="not a call"):
        processes.call("configure", "/tmp")
    assert "configure" not in CALLS


def test_close_kills_a_running_call(processes: ProofsProcesses, tmp_path: Path) -> None:
    c1 = commit1(tmp_path, 11)
    run = Running(processes.call, "seal_commit_phase2", c1, PROVER, 11)
    pid = busy_child(processes)
    processes.close()
    run.thread.join(5)
    assert run.error is not None and run.ended_at is not None
    assert gone(pid, 0.5)
    with pytest.raises(rust_core.Cancelled, match="service is stopping"):
        processes.call("seal_commit_phase2", c1, PROVER, 11)


def test_a_killed_worker_leaves_no_proofs_process(settings: ChildSettings, tmp_path: Path) -> None:
    c1 = commit1(tmp_path, 12)
    (tmp_path / "c1").write_bytes(c1)
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        from pathlib import Path
        from services.common.proofs_process import ChildSettings, ProofsProcesses
        p = ProofsProcesses(ChildSettings({settings.parameter_cache!r}, {settings.parent_cache!r}, 0))
        c1 = Path({str(tmp_path / "c1")!r}).read_bytes()
        threading.Thread(target=p.call, args=("seal_commit_phase2", c1, bytes(range(32)), 12), daemon=True).start()
        while not p.children():
            time.sleep(0.02)
        print(p.children()[0], flush=True)
        time.sleep(600)
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        deadline = time.monotonic() + 20
        while cpu_ticks(child) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.kill()
        worker.wait()
        # Reparented, it notices within its parent check (0.5 s) and exits.
        assert gone(child, 3.0), f"the proofs process {child} outlived its worker"
    finally:
        worker.kill()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_each_compute_device_has_children_of_its_own(processes: ProofsProcesses, tmp_path: Path) -> None:
    """The scheduler's GPU grant reaches the library through the child's environment (inert
    with the CPU-only build: the same commitments either way)."""
    proofs = FilecoinProofs(processes)
    pieces, comm_r, comm_d, cache, sealed = seal(tmp_path / "cpu", proofs, 13)
    [cpu_child] = processes.children()
    p1 = proofs.pre_commit1(SIZE, cache, tmp_path / "cpu" / "unsealed", PROVER, 13, TICKET, pieces)
    again = tmp_path / "cuda" / "cache"
    again.parent.mkdir()
    (tmp_path / "cpu" / "cache").rename(again)
    assert proofs.pre_commit2(p1, again, tmp_path / "cuda" / "sealed", "cuda:1") == (comm_r, comm_d)
    gpu_child = next(p for p in processes.children() if p != cpu_child)
    assert environ(cpu_child)["BELLMAN_NO_GPU"] == "1" and environ(cpu_child)["CUDA_VISIBLE_DEVICES"] == ""
    gpu_env = environ(gpu_child)
    assert gpu_env["CUDA_VISIBLE_DEVICES"] == "1" and "BELLMAN_NO_GPU" not in gpu_env
    assert gpu_env["FIL_PROOFS_USE_GPU_TREE_BUILDER"] == "1"
    with pytest.raises(ValueError, match="cpu or cuda:N"):
        processes.call("seal_commit_phase2", b"", PROVER, 13, device="opencl:0")
