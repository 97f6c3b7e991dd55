"""The checks the manager makes with the proofs backend (`[proofs] backend`,
docs/filecoin-backend.md): VerifySeal, Verify{Window,Winning}PoSt, the winning sector
challenge, and the PoSt made of the workers' vanilla proofs. One object, chosen when the manager
is wired (app.py), used by post.Proving. Grpc-free.

- `EmulatedVerifier`: rust_core's emulation, the calls post.py made before this seam.
- `FilecoinVerifier` (verifier_filecoin.py): rust_filecoin, imported only when chosen; it makes
  the PoSt SNARK from the workers' Filecoin vanilla proofs, as Lotus' miner does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import rust_core
from services.common.config import ProofsBackend, ProofsConfig


class ProofVerifier(Protocol):
    name: ProofsBackend

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
    ) -> bool: ...

    def verify_post(
        self,
        kind: str,
        sector_size: int,
        randomness: bytes,
        prover: bytes,
        sectors: list[tuple[int, bytes]],
        proof: bytes,
    ) -> bool: ...

    def winning_challenge(self, sector_size: int, randomness: bytes, prover: bytes, eligible: int) -> list[int]: ...

    def verify_vanilla(
        self, sector_size: int, randomness: bytes, prover: bytes, sector: tuple[int, bytes], proof: bytes, kind: str
    ) -> bool: ...

    def assemble(
        self, kind: str, sector_size: int, randomness: bytes, prover: bytes, vanilla: Sequence[tuple[int, bytes]]
    ) -> bytes:
        """The PoSt proof of (sector number, vanilla proof) pairs given in the request's order;
        ValueError or OSError when one is unusable."""
        ...


class EmulatedVerifier:
    name = ProofsBackend.EMULATED

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
        return bool(rust_core.verify_seal(sector_size, comm_r, comm_d, prover, number, ticket, seed, proof))

    def verify_post(
        self,
        kind: str,
        sector_size: int,
        randomness: bytes,
        prover: bytes,
        sectors: list[tuple[int, bytes]],
        proof: bytes,
    ) -> bool:
        fn = rust_core.verify_window_post if kind == "window" else rust_core.verify_winning_post
        return bool(fn(sector_size, randomness, prover, sectors, proof))

    def winning_challenge(self, sector_size: int, randomness: bytes, prover: bytes, eligible: int) -> list[int]:
        return [
            int(i) for i in rust_core.generate_winning_post_sector_challenge(sector_size, randomness, prover, eligible)
        ]

    def verify_vanilla(
        self, sector_size: int, randomness: bytes, prover: bytes, sector: tuple[int, bytes], proof: bytes, kind: str
    ) -> bool:
        return bool(rust_core.verify_single_vanilla_proof(sector_size, randomness, prover, sector, proof, kind))

    def assemble(
        self, kind: str, sector_size: int, randomness: bytes, prover: bytes, vanilla: Sequence[tuple[int, bytes]]
    ) -> bytes:
        """The emulated PoSt is the vanilla proofs' sections under one header, in the request's
        order (rust_core owns the byte format); ValueError names the first unusable one."""
        return bytes(rust_core.assemble_post(kind, sector_size, [proof for _, proof in vanilla]))


def for_config(proofs: ProofsConfig) -> ProofVerifier:
    """The verifier `[proofs]` names; for filecoin, rust_filecoin configured with its caches (the
    start-up check made sure it is installed)."""
    if proofs.backend is ProofsBackend.EMULATED:
        return EmulatedVerifier()
    from services.common.filecoin import configure
    from services.manager.verifier_filecoin import FilecoinVerifier

    configure(proofs)
    return FilecoinVerifier()
