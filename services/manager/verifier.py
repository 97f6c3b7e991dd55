"""The checks the manager makes with the proofs backend (`[proofs] backend`,
docs/filecoin-backend.md): VerifySeal, Verify{Window,Winning}PoSt, the winning sector
challenge, the PoSt made of the workers' vanilla proofs, and the backend's cache layout that
CheckProvable's cheap check compares a holder's files with (the tree-r-last files). One object,
chosen when the manager is wired (app.py), used by post.Proving. Grpc-free.

- `EmulatedVerifier`: rust_core's emulation, the calls post.py made before this seam.
- `FilecoinVerifier` (verifier_filecoin.py): rust_filecoin, imported only when chosen; it makes
  the PoSt SNARK from the workers' Filecoin vanilla proofs, as Lotus' miner does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

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
        self,
        kind: str,
        sector_size: int,
        randomness: bytes,
        prover: bytes,
        vanilla: Sequence[tuple[int, bytes]],
        cancel: rust_core.CancelToken | None = None,
    ) -> bytes:
        """The PoSt proof of (sector number, vanilla proof) pairs given in the request's order;
        ValueError or OSError when one is unusable, rust_core.Cancelled soon after `cancel` is
        cancelled (the caller gave up) when the backend can stop it."""
        ...

    def close(self) -> None:
        """The manager is stopping: whatever still runs is stopped."""
        ...

    def tree_r_last_files(self, sector_size: int) -> Mapping[str, int]:
        """{file name: size in bytes} of the tree-r-last files a sealed sector's cache holds
        with this backend (PC2 writes them, Finalize keeps them, PoSt reads them); ValueError for
        a size the backend does not serve."""
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
        self,
        kind: str,
        sector_size: int,
        randomness: bytes,
        prover: bytes,
        vanilla: Sequence[tuple[int, bytes]],
        cancel: rust_core.CancelToken | None = None,
    ) -> bytes:
        """The emulated PoSt is the vanilla proofs' sections under one header, in the request's
        order (rust_core owns the byte format; a copy, over in moments, so `cancel` is not
        needed); ValueError names the first unusable one."""
        return bytes(rust_core.assemble_post(kind, sector_size, [proof for _, proof in vanilla]))

    def close(self) -> None:
        """Nothing runs outside the calls themselves."""

    def tree_r_last_files(self, sector_size: int) -> Mapping[str, int]:
        """rust_core's layout (porep/files.rs, porep/tree_file.rs): `tree_r_last_parts` files,
        one unnumbered when there is one part, each of `tree_r_last_part_bytes`."""
        params = rust_core.sector_params(sector_size)
        parts = int(params["tree_r_last_parts"])
        size = tree_r_last_part_bytes(params)
        if parts == 1:
            return {"sc-02-data-tree-r-last.dat": size}
        return {f"sc-02-data-tree-r-last-{k}.dat": size for k in range(parts)}


def tree_r_last_part_bytes(params: Any) -> int:
    """The size of one tree-r-last part file: a binary tree over the part's leaves, stored from
    level `tree_r_rows_to_discard` up to the root, 32 bytes a node (rust_core's tree file
    layout, porep/tree_file.rs)."""
    leaves = int(params["nodes"]) // int(params["tree_r_last_parts"])
    height = leaves.bit_length() - 1
    skip = min(int(params["tree_r_rows_to_discard"]), height)
    return sum(leaves >> level for level in range(skip, height + 1)) * int(params["node_size"])


def for_config(proofs: ProofsConfig) -> ProofVerifier:
    """The verifier `[proofs]` names; for filecoin, rust_filecoin configured with its caches (the
    start-up check made sure it is installed), its PoSt SNARKs made in killable child processes
    (services/common/proofs_process.py) so that a caller who gives up stops its SNARK."""
    if proofs.backend is ProofsBackend.EMULATED:
        return EmulatedVerifier()
    from services.common.filecoin import configure
    from services.common.proofs_process import ChildSettings, ProofsProcesses
    from services.manager.verifier_filecoin import FilecoinVerifier

    configure(proofs)
    settings = ChildSettings(proofs.parameter_cache, proofs.parent_cache, proofs.generate_parameters_up_to)
    return FilecoinVerifier(ProofsProcesses(settings, max_idle=1, stopped=rust_core.Cancelled))
