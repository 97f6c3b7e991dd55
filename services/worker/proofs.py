"""The proofs backend the sealing tasks call (`[proofs] backend`, docs/filecoin-backend.md): one
object chosen when the worker is wired (app.py) and handed to every task in TaskEnv, so the
tasks never test which backend runs.

- `EmulatedProofs`: rust_core's PoRep emulation, exactly the functions of sealer.py (the
  default; nothing about it changes with this seam).
- `FilecoinProofs` (proofs_filecoin.py): Filecoin's own proofs through the optional
  rust_filecoin extension, imported only when chosen, so a worker without it runs as before.

What the two share is not here: AddPiece (fr32 padding and commP are Filecoin's in both, so the
unsealed file and commP/commD are byte-identical), the CIDs, and reading pieces back (fr32
unpadding of the unsealed file).

Where the filecoin library has no equivalent:
- no cancel tokens: the worker runs its long calls in child processes instead
  (services/common/proofs_process.py) and kills the child when the task's token is cancelled, so a stopped
  task's locks and reservations are released within about 50 ms, as with the emulation;
- PC1 batching is the emulation's (app.py refuses `pc1_batch_size` > 1 with this backend);
- PC1 writes a copy of the data next to the labels (`STAGED_REPLICA` in the cache: the library
  seals a replica file in place) and PC2 seals a copy of it into the sealed file, so PC2 can be
  retried; Finalize removes it;
- vanilla PoSt proofs are Filecoin's (`FCPV` blobs) and the manager makes the SNARK from them;
  the library checks each one as it makes it, so a corrupted sector fails on its worker;
- a fetched sealed file or cache is not content-checked (rust_filecoin's check needs the comm_r,
  which a fetch does not know): the transfer's size and CRC32C checks remain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import rust_core
from services.common.config import ProofsBackend, ProofsConfig
from services.worker import sealer
from services.worker.sealer import Piece, Token
from services.worker.sectors import PostKind


# The library's PC1 copies the unsealed data here (inside the cache, so it moves with the cache
class SealingProofs(Protocol):
    """The PoRep operations of one backend: blocking calls, run by the tasks in a thread, each
    taking the task's cancel token (the call raises rust_core.Cancelled soon after it is
    cancelled, its half-written output removed)."""

    name: ProofsBackend
    # Whether a fetched sealed file or cache is checked against its partner (content_check).
    checks_fetched_content: bool

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
    ) -> bytes: ...

    def pre_commit2(
        self, p1_output: bytes, cache: Path, sealed: Path, backend: str, cancel: Token = None
    ) -> tuple[bytes, bytes]: ...

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
    ) -> bytes: ...

    def commit2(self, c1_output: bytes, prover: bytes, number: int, backend: str, cancel: Token = None) -> bytes: ...

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
    ) -> None: ...

    def clear_cache(self, cache: Path, sector_size: int) -> None: ...

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
    ) -> bytes: ...

    def close(self) -> None:
        """The worker is stopping: whatever still runs is stopped."""


class EmulatedProofs:
    """rust_core's emulation: the sealer.py functions themselves (their signatures are the
    protocol's, which mypy checks where `for_config` returns this class)."""

    name = ProofsBackend.EMULATED
    checks_fetched_content = True

    pre_commit1 = staticmethod(sealer.pre_commit1)
    pre_commit2 = staticmethod(sealer.pre_commit2)
    commit1 = staticmethod(sealer.commit1)
    commit2 = staticmethod(sealer.commit2)
    unseal = staticmethod(sealer.unseal)
    clear_cache = staticmethod(sealer.clear_cache)
    vanilla_proof = staticmethod(sealer.vanilla_proof)

    def close(self) -> None:
        """Nothing to stop: the calls run in the worker's threads and honour their tokens."""


def for_config(proofs: ProofsConfig, isolate_calls: bool = True) -> SealingProofs:
    """The backend `[proofs]` names; for filecoin, rust_filecoin configured with its parameter
    and parent caches (the start-up check made sure it is installed), its long calls run in
    killable child processes unless `isolate_calls` is False (a bench measuring the library in
    the process it already runs each step in)."""
    if proofs.backend is ProofsBackend.EMULATED:
        return EmulatedProofs()
    from services.common.filecoin import configure
    from services.common.proofs_process import ChildSettings, ProofsProcesses
    from services.worker.proofs_filecoin import FilecoinProofs

    configure(proofs)
    if not isolate_calls:
        return FilecoinProofs()
    settings = ChildSettings(proofs.parameter_cache, proofs.parent_cache, proofs.generate_parameters_up_to)
    return FilecoinProofs(ProofsProcesses(settings, stopped=rust_core.Cancelled))
