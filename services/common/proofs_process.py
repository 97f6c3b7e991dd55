"""Filecoin proofs calls in child processes, so that a stopped call really stops.

The proofs library has no cancellation point: in-process, an aborted C2 or a timed-out 512 MiB
PC1 would keep its thread, its cores and its memory until the call ended, and the task's locks
and reservations with it; a PoSt SNARK whose caller gave up would go on using the manager's
cores. Each call here runs in a child process that can be killed: once the call's token is
cancelled (the worker's: abort, timeout, drain deadline, lost lock, shutdown; the manager's: its
caller gone) the child gets SIGKILL and the call raises the owner's "stopped" exception within
about 50 ms. It also keeps the service alive when the library aborts or the kernel's OOM killer
picks the call: the call fails with the child's signal, the service goes on.

Used by the worker's filecoin backend (services/worker/proofs_filecoin.py, which stops with
rust_core.Cancelled) and the manager's filecoin verifier (the PoSt SNARK).

Children are reused one call at a time (at most `max_idle` wait), so the library's in-memory
caches (Groth16 parameters after a C2, the SDR parents) survive between calls as they would
in-process. A child serves one compute device, fixed in its environment when it starts (the
library reads its GPU settings once per process): `cuda:N` children see only GPU N
(CUDA_VISIBLE_DEVICES) and build PC2's trees on it, `cpu` children are told to use no GPU. With
the default CPU-only build of rust_filecoin these variables change nothing; with a CUDA build
they are how the scheduler's GPU grant reaches the library, as Curio's ffiselect does. A child watches its parent and exits when its service is gone, so a
killed worker or manager leaves no proving process behind.

The wire between them is this module's: length-prefixed pickles on the child's stdin and on a
duplicate of its stdout (fd 1 itself is pointed at stderr, so whatever the library prints cannot
corrupt a reply). Only rust_filecoin functions named in CALLS can be asked for.
"""

from __future__ import annotations

import argparse
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

# What a child may be asked to run: the library's long calls (clear_cache and the parameter
# checks stay in the service's process).
CALLS = frozenset(
    {
        "seal_pre_commit_phase1",
        "seal_pre_commit_phase2",
        "seal_commit_phase1",
        "seal_commit_phase2",
        "unseal_range",
        "generate_single_vanilla_proof",
        "generate_post_with_vanilla",
    }
)

_HEADER = struct.Struct("<Q")
# How often a waiting call looks at its cancel token, and a child at its parent.
_POLL_S = 0.05
_PARENT_CHECK_S = 0.5


@dataclass(frozen=True)
class ChildSettings:
    """What every child configures the library with: the service's `[proofs]` caches."""

    parameter_cache: str = ""
    parent_cache: str = ""
    generate_up_to: int = 0

    def argv(self) -> list[str]:
        return [
            "--parameter-cache",
            self.parameter_cache,
            "--parent-cache",
            self.parent_cache,
            "--generate-up-to",
            str(self.generate_up_to),
        ]


def device_env(device: str) -> dict[str, str]:
    """The environment a child for `device` ("cpu" or "cuda:N") starts with, over the service's."""
    if device == "cpu":
        return {
            "BELLMAN_NO_GPU": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "FIL_PROOFS_USE_GPU_COLUMN_BUILDER": "0",
            "FIL_PROOFS_USE_GPU_TREE_BUILDER": "0",
        }
    kind, _, ordinal = device.partition(":")
    if kind != "cuda" or not ordinal.isdigit():
        raise ValueError(f"compute device {device!r}: expected cpu or cuda:N")
    return {
        "CUDA_VISIBLE_DEVICES": ordinal,
        "FIL_PROOFS_USE_GPU_COLUMN_BUILDER": "1",
        "FIL_PROOFS_USE_GPU_TREE_BUILDER": "1",
    }


class Stoppable(Protocol):
    """A call's cancel token (rust_core.CancelToken: this module does not import rust_core)."""

    @property
    def cancelled(self) -> bool: ...


class CallStopped(Exception):
    """The default "stopped" exception: the call's token was cancelled and its process killed."""


class ChildDied(OSError):
    """The child running a call exited without answering (killed by a signal: often the kernel's
    OOM killer, or the library aborting)."""


def _write_frame(out: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def _read_exact(src: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = src.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(src: IO[bytes]) -> Any:
    """The next object, or EOFError when the other side is gone."""
    header = _read_exact(src, _HEADER.size)
    if header is None:
        raise EOFError
    (length,) = _HEADER.unpack(header)
    body = _read_exact(src, length)
    if body is None:
        raise EOFError
    return pickle.loads(body)


class _Child:
    """One child process and its two pipes."""

    def __init__(self, settings: ChildSettings, device: str) -> None:
        self.device = device
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env.pop("BELLMAN_NO_GPU", None)
        env.update(device_env(device))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.common.proofs_process", "--parent", str(os.getpid()), *settings.argv()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.requests: IO[bytes] = self.proc.stdin
        self.replies: IO[bytes] = self.proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, name: str, args: tuple[Any, ...], cancel: Stoppable | None, stopped: type[Exception]) -> Any:
        """Sends one call and waits for its answer, checking the token meanwhile."""
        try:
            _write_frame(self.requests, (name, args))
        except (BrokenPipeError, ValueError):
            raise self._died(name) from None
        fd = self.replies.fileno()
        while True:
            if cancel is not None and cancel.cancelled:
                self.kill()
                raise stopped(f"{name} was stopped: its proofs process (pid {self.pid}) was killed")
            ready, _, _ = select.select([fd], [], [], _POLL_S)
            if ready:
                break
        try:
            return _read_frame(self.replies)
        except EOFError:
            raise self._died(name) from None

    def _died(self, name: str) -> ChildDied:
        code = self.proc.wait()
        if code < 0:
            sig = signal.Signals(-code)
            hint = (
                " (the kernel's OOM killer sends SIGKILL: check the service's memory)" if sig is signal.SIGKILL else ""
            )
            return ChildDied(f"{name}: its proofs process (pid {self.pid}) died of {sig.name}{hint}")
        return ChildDied(f"{name}: its proofs process (pid {self.pid}) exited with code {code} before answering")

    def kill(self) -> None:
        """SIGKILL and reap; the child's pipes are closed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.requests, self.replies):
            try:
                pipe.close()
            except OSError:
                pass


class ProofsProcesses:
    """Runs rust_filecoin calls in killable child processes (see the module docstring). Safe to
    use from several threads: each call has a child of its own while it runs. A stopped call
    raises `stopped` (the worker's is rust_core.Cancelled)."""

    def __init__(self, settings: ChildSettings, max_idle: int = 2, stopped: type[Exception] = CallStopped) -> None:
        self.settings = settings
        self.stopped = stopped
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._closed = False

    def call(self, name: str, *args: Any, cancel: Stoppable | None = None, device: str = "cpu") -> Any:
        """`rust_filecoin.<name>(*args)` in a child for `device`: its result, or the exception it
        raised there (same type), `self.stopped` once `cancel` is cancelled, ChildDied when the
        child was killed by something else."""
        if name not in CALLS:
            raise ValueError(f"{name} is not a call the proofs processes run")
        device_env(device)  # a malformed device is the caller's ValueError, before any child
        if cancel is not None and cancel.cancelled:
            raise self.stopped(f"{name} was stopped before it started")
        child = self._take(device)
        try:
            reply = child.run(name, args, cancel, self.stopped)
        except BaseException:
            child.kill()
            self._forget(child)
            raise
        self._give_back(child)
        status, value = reply
        if status == "ok":
            return value
        raise value

    def children(self) -> list[int]:
        """The pids of this object's live children (running a call or idle)."""
        with self._lock:
            return [c.pid for c in (*self._idle, *self._busy)]

    def close(self) -> None:
        """Kills every child, busy or idle: the service is stopping."""
        with self._lock:
            self._closed = True
            everyone = [*self._idle, *self._busy]
            self._idle.clear()
        for child in everyone:
            child.kill()

    def _take(self, device: str) -> _Child:
        with self._lock:
            if self._closed:
                raise self.stopped("the service is stopping")
            for child in [c for c in self._idle if c.device == device]:
                self._idle.remove(child)
                if child.alive():
                    self._busy.add(child)
                    return child
            child = _Child(self.settings, device)
            self._busy.add(child)
            return child

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            self._busy.discard(child)
            if not self._closed and child.alive():
                self._idle.append(child)
                if len(self._idle) <= self.max_idle:
                    return
                child = self._idle.pop(0)  # the longest idle makes room
        child.kill()

    def _forget(self, child: _Child) -> None:
        with self._lock:
            self._busy.discard(child)


# --- the child's side -----------------------------------------------------------------------------


def _watch_parent(parent: int) -> None:
    """Exits the child once the service that started it is gone (the library call running in
    the main thread releases the GIL, so this thread runs during it)."""
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(_PARENT_CHECK_S)


def _serve(settings: ChildSettings) -> None:
    import rust_filecoin

    rust_filecoin.configure(settings.parameter_cache or None, settings.parent_cache or None, settings.generate_up_to)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    while True:
        try:
            name, args = _read_frame(requests)
        except EOFError:
            return
        try:
            if name not in CALLS:
                raise ValueError(f"{name} is not a call the proofs processes run")
            reply: tuple[str, object] = ("ok", getattr(rust_filecoin, name)(*args))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = ("error", _portable(exc))
        _write_frame(replies, reply)


def _portable(exc: Exception) -> Exception:
    """The exception itself when it survives pickling (the library's own classes, OSError with
    its errno and path), else an OSError carrying its type and text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure falls back to text
        return OSError(f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a sectorstorage service's proofs process (not for direct use)")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--parameter-cache", default="")
    parser.add_argument("--parent-cache", default="")
    parser.add_argument("--generate-up-to", type=int, default=0)
    ns = parser.parse_args(argv)
    if os.getppid() != ns.parent:
        return
    threading.Thread(target=_watch_parent, args=(ns.parent,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the service's terminal: it decides
    _serve(ChildSettings(ns.parameter_cache, ns.parent_cache, ns.generate_up_to))


if __name__ == "__main__":
    main()
