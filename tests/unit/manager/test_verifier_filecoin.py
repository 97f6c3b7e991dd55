"""The manager's filecoin verifier (services/manager/verifier_filecoin.py) in-process, for what
the fleet test cannot reach cheaply: a verifying key missing from the manager's parameter cache
(64 GiB: the network's files only, never generated) is FAILED_PRECONDITION naming the file, not an invalid proof; an
emulated vanilla proof is refused before it is stored. Real proofs through the manager:
tests/integration/fleet/test_filecoin_fleet.py."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition

rust_filecoin = pytest.importorskip(
    "rust_filecoin",
    reason="rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`",
)

from services.manager.verifier import EmulatedVerifier  # noqa: E402
from services.manager.verifier_filecoin import FilecoinVerifier  # noqa: E402

MIB8 = 8 << 20


def test_a_missing_verifying_key_is_the_operators_to_fix() -> None:
    proof = b"FCPT\x01\x00" + bytes(192)
    with pytest.raises(FailedPrecondition, match=r"\.vk.*parameter_cache"):
        FilecoinVerifier().verify_post("window", 64 << 30, bytes(32), bytes(32), [(1, bytes(32))], proof)


def test_vanilla_proofs_of_the_other_backend_are_refused() -> None:
    v = FilecoinVerifier()
    with pytest.raises(ValueError, match="emulated"):
        v.verify_vanilla(2048, bytes(32), bytes(32), (1, bytes(32)), b"SSPV\x01\x00" + bytes(40), "window")
    with pytest.raises(ValueError, match="FCPV"):
        v.verify_vanilla(2048, bytes(32), bytes(32), (1, bytes(32)), b"junk", "window")
    assert v.verify_vanilla(2048, bytes(32), bytes(32), (1, bytes(32)), b"FCPV\x01\x00" + bytes(40), "window")


def test_tree_r_last_layout_is_the_librarys() -> None:
    """CheckProvable's expected tree-r-last files: the library's layout (rust_filecoin, checked
    against a real PC2 in tests/unit/rust_filecoin), not the emulation's, which differs at 8 MiB."""
    v = FilecoinVerifier()
    assert v.tree_r_last_files(2048) == {"sc-02-data-tree-r-last.dat": 32}
    assert v.tree_r_last_files(MIB8) == {"sc-02-data-tree-r-last.dat": 18_720}
    assert v.tree_r_last_files(MIB8) != EmulatedVerifier().tree_r_last_files(MIB8)
    assert len(v.tree_r_last_files(32 << 30)) == 8
    with pytest.raises(ValueError, match="unsupported sector size"):
        v.tree_r_last_files(16 << 30)
