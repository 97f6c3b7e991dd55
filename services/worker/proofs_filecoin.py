"""The filecoin proofs backend of the sealing tasks (proofs.py says what differs from the
emulation): rust_filecoin, which only this module, services/common/filecoin.py and the child
processes of services/common/proofs_process.py import, and only once `[proofs] backend = "filecoin"` chose it.

The long calls (PC1, PC2, C1, C2, unseal, vanilla proofs) run through a `Caller`: in the worker,
ProofsProcesses, whose child processes are killed when the task's cancel token is cancelled
(the library has no cancellation point of its own); `InProcess` calls the library directly, for
tests and benches that have no token to honour."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

import rust_core
import rust_filecoin
from services.common.config import ProofsBackend
from services.worker import sealer
from services.worker.sealer import Piece, Token
from services.worker.sectors import PostKind

# The library's PC1 copies the unsealed data here (inside the cache, so it moves with the cache
# to the PC2 worker) and PC2 seals a copy of it into the sealed file.
STAGED_REPLICA = "sc-staged-replica"


class Caller(Protocol):
    """Runs `rust_filecoin.<name>(*args)` on a compute device ("cpu", "cuda:N"), stopping it
    when `cancel` is cancelled if it can."""

    def call(self, name: str, *args: Any, cancel: Token = None, device: str = "cpu") -> Any: ...

    def close(self) -> None: ...


class InProcess:
    """The library in this process: a call cannot be stopped (the token is ignored) and runs
    where the process's environment says (the device is ignored)."""

    def call(self, name: str, *args: Any, cancel: Token = None, device: str = "cpu") -> Any:
        return getattr(rust_filecoin, name)(*args)

    def close(self) -> None:
        pass


class FilecoinProofs:
    """Filecoin's proofs (rust_filecoin, filecoin-proofs-api). Blobs of the emulated backend
    raise rust_filecoin.BackendMismatch, a ValueError: the task fails PERMANENT."""

    name = ProofsBackend.FILECOIN
    checks_fetched_content = False

    def __init__(self, caller: Caller | None = None) -> None:
        self.caller: Caller = caller if caller is not None else InProcess()

    def close(self) -> None:
        """Stops the calls still running (their child processes are killed)."""
        self.caller.close()

    def pre_commit1(
        self,
        sector_size: int,
        cache: Path,
        unsealed: Path,
        prover: bytes,
        number: int,
        ticket: bytes,
        pieces: list[Piece],
        cancel: Token = None,
    ) -> bytes:
        return bytes(
            self.caller.call(
                "seal_pre_commit_phase1",
                sector_size,
                cache,
                unsealed,
                cache / STAGED_REPLICA,
                prover,
                number,
                ticket,
                [p.as_tuple() for p in pieces],
                cancel=cancel,
            )
        )

    def pre_commit2(
        self, p1_output: bytes, cache: Path, sealed: Path, backend: str, cancel: Token = None
    ) -> tuple[bytes, bytes]:
        staged = cache / STAGED_REPLICA
        if not staged.is_file():
            raise FileNotFoundError(
                f"{staged} is missing: the cache was not written by this backend's PC1; run PC1 again"
            )
        before = set(os.listdir(cache))
        try:
            shutil.copyfile(staged, sealed)
            comm_r, comm_d = self.caller.call(
                "seal_pre_commit_phase2", p1_output, cache, sealed, cancel=cancel, device=backend
            )
        except BaseException:
            # A stopped or failed PC2 leaves PC1's cache as it found it: half-built trees
            # are not taken for a finished PC2's by a retry or a fetch (the task removes the
            # sealed file).
            for name in set(os.listdir(cache)) - before:
                rust_core.discard(cache / name)
            raise
        return bytes(comm_r), bytes(comm_d)

    def commit1(
        self,
        sector_size: int,
        cache: Path,
        sealed: Path,
        prover: bytes,
        number: int,
        ticket: bytes,
        seed: bytes,
        pieces: list[Piece],
        comm_r: bytes,
        comm_d: bytes,
        cancel: Token = None,
    ) -> bytes:
        return bytes(
            self.caller.call(
                "seal_commit_phase1",
                sector_size,
                cache,
                sealed,
                prover,
                number,
                ticket,
                seed,
                [p.as_tuple() for p in pieces],
                comm_r,
                comm_d,
                cancel=cancel,
            )
        )

    def commit2(self, c1_output: bytes, prover: bytes, number: int, backend: str, cancel: Token = None) -> bytes:
        try:
            return bytes(
                self.caller.call("seal_commit_phase2", c1_output, prover, number, cancel=cancel, device=backend)
            )
        except rust_filecoin.MissingParameters as exc:
            # Not transient: no retry here or elsewhere in a fleet sharing one configuration helps.
            raise ValueError(str(exc)) from None

    def unseal(
        self,
        sector_size: int,
        cache: Path,
        sealed: Path,
        unsealed: Path,
        prover: bytes,
        number: int,
        ticket: bytes,
        comm_d: bytes,
        unpadded_offset: int,
        unpadded_length: int,
        cancel: Token = None,
    ) -> None:
        """The library writes the original bytes to a file of their own; they are fr32-padded
        into the unsealed file's data area at the range's place, as the emulation writes them.
        The range starts on a 127-byte block (tasks.unseal_piece rounds it), so the padding of
        the range is the padding the whole file has there."""
        with tempfile.TemporaryDirectory(dir=unsealed.parent, prefix=".unseal-") as tmp:
            plain = Path(tmp) / "range"
            written = self.caller.call(
                "unseal_range",
                sector_size,
                cache,
                sealed,
                plain,
                prover,
                number,
                comm_d,
                ticket,
                unpadded_offset,
                unpadded_length,
                cancel=cancel,
            )
            if written != unpadded_length:
                raise OSError(f"unseal wrote {written} bytes, expected {unpadded_length}")
            padded_offset = unpadded_offset // 127 * 128
            with open(plain, "rb") as src, open(unsealed, "r+b") as dst:
                dst.seek(padded_offset)
                sealer.pad_stream(src, dst)
                dst.flush()

    def clear_cache(self, cache: Path, sector_size: int) -> None:
        rust_filecoin.clear_cache(cache)
        with contextlib.suppress(FileNotFoundError):
            (cache / STAGED_REPLICA).unlink()

    def vanilla_proof(
        self,
        kind: PostKind,
        sector_size: int,
        randomness: bytes,
        prover: bytes,
        number: int,
        comm_r: bytes,
        sealed: Path,
        cache: Path,
        cancel: Token = None,
    ) -> bytes:
        """Filecoin's vanilla proof of the sector's challenged leaves. The library checks the
        proof it made: a corrupted sector fails here with OSError ("... is invalid"), and the
        manager skips it as faulty (Window PoSt) instead of failing the SNARK."""
        name = "window" if kind == PostKind.WINDOW else "winning"
        sector = (number, comm_r, sealed, cache)
        return bytes(
            self.caller.call(
                "generate_single_vanilla_proof", name, sector_size, randomness, prover, sector, cancel=cancel
            )
        )
