"""The manager's checks with Filecoin's proofs (rust_filecoin; verifier.py says what is wired).
Only this module of the manager imports rust_filecoin, and only once `[proofs] backend =
"filecoin"` chose it. Proofs of the emulated backend raise rust_filecoin.BackendMismatch, a
ValueError, which the callers report as an invalid proof / argument."""

from __future__ import annotations

from collections.abc import Sequence

import rust_filecoin
from services.common.config import ProofsBackend


class FilecoinVerifier:
    name = ProofsBackend.FILECOIN
    assembles_post = False

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
        return bool(fn(sector_size, randomness, prover, sectors, proof))

    def winning_challenge(self, sector_size: int, randomness: bytes, prover: bytes, eligible: int) -> list[int]:
        return [
            int(i)
            for i in rust_filecoin.generate_winning_post_sector_challenge(sector_size, randomness, prover, eligible)
        ]

    def verify_vanilla(
        self, sector_size: int, randomness: bytes, prover: bytes, sector: tuple[int, bytes], proof: bytes, kind: str
    ) -> bool:
        raise ValueError("vanilla PoSt proofs are not wired for proofs.backend = filecoin (docs/filecoin-backend.md)")

    def assemble(self, kind: str, sector_size: int, vanilla: Sequence[bytes]) -> bytes:
        raise ValueError(
            "a PoSt is not assembled from vanilla proofs with proofs.backend = filecoin (docs/filecoin-backend.md)"
        )
