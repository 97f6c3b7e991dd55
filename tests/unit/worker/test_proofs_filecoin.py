"""The worker's filecoin proofs backend (services/worker/proofs_filecoin.py) in-process, for what
a fleet cannot send it through the manager (which refuses a PC1 output other than the one it
recorded): a blob of the emulated backend, a cache without PC1's staged copy. The sealing itself
is tested through real processes in tests/integration/fleet/test_filecoin_fleet.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import rust_core
from services.common.config import ProofsBackend, ProofsConfig
from services.common.vocabulary import TaskErrorCode as Code
from services.common.vocabulary import prover_id
from services.worker import tasks
from services.worker.proofs import EmulatedProofs, for_config

rust_filecoin = pytest.importorskip(
    "rust_filecoin",
    reason="rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`",
)

from services.worker.proofs_filecoin import STAGED_REPLICA, FilecoinProofs  # noqa: E402

SIZE = 2048
TICKET = bytes(31) + b"\x01"


def test_the_default_is_the_emulation() -> None:
    assert isinstance(for_config(ProofsConfig()), EmulatedProofs)
    assert for_config(ProofsConfig()).name is ProofsBackend.EMULATED


def test_an_emulated_pc1_output_fails_for_good_naming_the_backends(tmp_path: Path) -> None:
    src, unsealed, cache = tmp_path / "piece", tmp_path / "unsealed", tmp_path / "cache"
    src.write_bytes(bytes(range(127)) * 16)
    size, commp = rust_core.add_piece_file(src, unsealed)
    p1 = rust_core.seal_pre_commit_phase1(SIZE, cache, unsealed, prover_id(1000), 1, TICKET, [(size, bytes(commp))])
    (cache / STAGED_REPLICA).write_bytes(unsealed.read_bytes()[:SIZE])
    with pytest.raises(rust_filecoin.BackendMismatch) as err:
        FilecoinProofs().pre_commit2(p1, cache, tmp_path / "sealed", "cpu")
    failure = tasks.classify(err.value)
    assert failure.code == Code.PERMANENT and "emulated" in failure.message, failure.message


def test_pc2_without_the_staged_copy_says_to_run_pc1_again(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    with pytest.raises(FileNotFoundError, match="run PC1 again"):
        FilecoinProofs().pre_commit2(b"FCP1\x01\x00{}", tmp_path / "cache", tmp_path / "sealed", "cpu")
    assert not (tmp_path / "sealed").exists()
