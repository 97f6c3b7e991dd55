"""rust_core.assemble_post: the manager's PoSt aggregation (services/manager/post.py) is rust_core's,
so the proof layouts are written in one place. A PoSt assembled from single vanilla proofs equals
the one generated whole and verifies; a vanilla proof of another kind, size or format is named."""

from __future__ import annotations

from pathlib import Path

import pytest

import rust_core
from services.manager.post import assemble
from tests.unit.rust_core.porep_helpers import PROVER, Sector, seal_sector

KIB2 = 2048
RAND = bytes([0x21] * 32)


@pytest.fixture(scope="module")
def sectors(tmp_path_factory: pytest.TempPathFactory) -> list[Sector]:
    root = tmp_path_factory.mktemp("post")
    return [seal_sector(root / f"s{n}", KIB2, n, [1024], rng_seed=n) for n in (7, 8)]


def test_assembled_window_post_equals_generated_and_verifies(sectors: list[Sector]) -> None:
    vanilla = [rust_core.generate_single_vanilla_proof(KIB2, RAND, PROVER, s.post_sector()) for s in sectors]
    whole = rust_core.generate_window_post(KIB2, RAND, PROVER, [s.post_sector() for s in sectors])
    assert rust_core.assemble_post("window", KIB2, vanilla) == whole
    assert assemble("window", KIB2, vanilla) == whole
    public = [(s.number, s.comm_r) for s in sectors]
    assert rust_core.verify_window_post(KIB2, RAND, PROVER, public, whole)
    # Order is the caller's: swapped sections do not verify against the listed sectors.
    swapped = rust_core.assemble_post("window", KIB2, vanilla[::-1])
    assert not rust_core.verify_window_post(KIB2, RAND, PROVER, public, swapped)


def test_assembled_winning_post_equals_generated(sectors: list[Sector]) -> None:
    s = sectors[0]
    vanilla = rust_core.generate_single_vanilla_proof(KIB2, RAND, PROVER, s.post_sector(), "winning")
    whole = rust_core.generate_winning_post(KIB2, RAND, PROVER, [s.post_sector()])
    assert rust_core.assemble_post("winning", KIB2, [vanilla]) == whole


def test_unusable_vanilla_proofs_are_named(sectors: list[Sector], tmp_path: Path) -> None:
    good = rust_core.generate_single_vanilla_proof(KIB2, RAND, PROVER, sectors[0].post_sector())
    with pytest.raises(ValueError, match="vanilla proof 1 is truncated"):
        assemble("window", KIB2, [good, good[:14]])
    with pytest.raises(ValueError, match="vanilla proof 0 is not a winning proof for 2048-byte sectors"):
        assemble("winning", KIB2, [good])
    with pytest.raises(ValueError, match="vanilla proof 0 is not a window proof for 8388608-byte sectors"):
        assemble("window", 8 << 20, [good])
    whole = rust_core.generate_window_post(KIB2, RAND, PROVER, [sectors[0].post_sector()])
    with pytest.raises(ValueError, match="is not a window proof"):
        assemble("window", KIB2, [whole])
    with pytest.raises(ValueError, match="unknown PoSt kind"):
        rust_core.assemble_post("daily", KIB2, [good])
