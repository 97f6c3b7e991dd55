"""The manager's checks with Filecoin's proofs (rust_filecoin; verifier.py says what is wired).
Only this module of the manager imports rust_filecoin, and only once `[proofs] backend =
"filecoin"` chose it. Proofs of the emulated backend raise rust_filecoin.BackendMismatch, a
ValueError, which the callers report as an invalid proof / argument."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import rust_core
import rust_filecoin
from services.common.config import ProofsBackend
from services.common.errors import FailedPrecondition
from services.common.proofs_process import ProofsProcesses

VANILLA_MAGIC = b"FCPV"


@contextlib.contextmanager
def _parameters() -> Iterator[None]:
    """A Groth16 parameter or verifying-key file missing from the manager's parameter cache is
    the operator's to fix (FAILED_PRECONDITION naming the file), not a bad proof."""
    try:
        yield
    except rust_filecoin.MissingParameters as exc:
        raise FailedPrecondition(f"{exc} (this manager's proofs.parameter_cache)") from None


class FilecoinVerifier:
    """Checks run in this process (milliseconds); the PoSt SNARK (seconds to minutes) in a child
    process when `processes` is given, so that it can be stopped."""

    name = ProofsBackend.FILECOIN

    def __init__(self, processes: ProofsProcesses | None = None) -> None:
        self.processes = processes

    def close(self) -> None:
        if self.processes is not None:
            self.processes.close()

    def verify_seal(
        self,
        sector_size: int,
        comm_r: bytes,
        comm_d: bytes,
        prover: bytes,
        number: int,
        ticket: bytes,
        seed: bytes,
        proof: bytes,
    ) -> bool:
        with _parameters():
            return bool(rust_filecoin.verify_seal(sector_size, comm_r, comm_d, prover, number, ticket, seed, proof))

    def verify_post(
        self,
        kind: str,
        sector_size: int,
        randomness: bytes,
        prover: bytes,
        sectors: list[tuple[int, bytes]],
        proof: bytes,
    ) -> bool:
        fn = rust_filecoin.verify_window_post if kind == "window" else rust_filecoin.verify_winning_post
        with _parameters():
            return bool(fn(sector_size, randomness, prover, sectors, proof))

    def winning_challenge(self, sector_size: int, randomness: bytes, prover: bytes, eligible: int) -> list[int]:
        return [
            int(i)
            for i in rust_filecoin.generate_winning_post_sector_challenge(sector_size, randomness, prover, eligible)
        ]

    def verify_vanilla(
        self, sector_size: int, randomness: bytes, prover: bytes, sector: tuple[int, bytes], proof: bytes, kind: str
    ) -> bool:
        """Only that it is a filecoin vanilla proof (the API has no check of one alone): the
        library checked each one as the worker made it, and checks them all again when it makes
        the SNARK (assemble)."""
        backend = rust_filecoin.blob_backend(proof)
        if backend == "emulated":
            raise ValueError("it was made by the emulated proofs backend; this manager runs the filecoin one")
        if not proof.startswith(VANILLA_MAGIC):
            raise ValueError(f"not a filecoin vanilla PoSt proof (expected it to start with {VANILLA_MAGIC!r})")
        return True

    def assemble(
        self,
        kind: str,
        sector_size: int,
        randomness: bytes,
        prover: bytes,
        vanilla: Sequence[tuple[int, bytes]],
        cancel: rust_core.CancelToken | None = None,
    ) -> bytes:
        """The PoSt SNARK, made here from the workers' vanilla proofs (the library wants them in
        ascending sector number, as the verifier orders the sectors). Loads the PoSt circuit's
        parameters (11.5 MB / 47 MB at 2 KiB). OSError when one does not verify;
        rust_core.Cancelled once `cancel` is cancelled (its child process killed)."""
        ordered = [proof for _, proof in sorted(vanilla, key=lambda item: item[0])]
        args = (kind, sector_size, randomness, prover, ordered)
        with _parameters():
            if self.processes is None:
                return bytes(rust_filecoin.generate_post_with_vanilla(*args))
            return bytes(self.processes.call("generate_post_with_vanilla", *args, cancel=cancel))

    def tree_r_last_files(self, sector_size: int) -> Mapping[str, int]:
        """The library's layout for the size's tree shape (rust_filecoin.tree_r_last_files: its
        base tree count, file names, rows to discard and merkle cache size; one file at the sizes
        served here). It follows FIL_PROOFS_ROWS_TO_DISCARD as the workers' PC2 does, so the
        setting must be the same on the manager as on the workers (the default is)."""
        return dict(rust_filecoin.tree_r_last_files(sector_size))
