"""The manager's filecoin verifier (services/manager/verifier_filecoin.py) in-process, for what
the fleet test cannot reach cheaply: a verifying key missing from the manager's parameter cache
(64 GiB: the network's files only, never generated) is FAILED_PRECONDITION naming the file, not an invalid proof; an
emulated vanilla proof is refused before it is stored. Real proofs through the manager:
tests/integration/fleet/test_filecoin_fleet.py."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import rust_core
from services.common.errors import FailedPrecondition
from services.common.proofs_process import ChildSettings, ProofsProcesses
from tests.support.paths import filecoin_param_cache as param_cache
from tests.support.procstat import cpu_ticks, gone

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


def _winning_vanilla(tmp_path: Path) -> tuple[bytes, bytes, list[tuple[int, bytes]]]:
    """A 2 KiB sector sealed here (PC1, PC2: milliseconds) and its Winning PoSt vanilla proof:
    (randomness, prover, [(sector number, vanilla proof)])."""
    data = random.Random(3).randbytes(2032)
    (tmp_path / "piece").write_bytes(data)
    unsealed, sealed, cache = tmp_path / "unsealed", tmp_path / "sealed", tmp_path / "cache"
    padded, comm_p = rust_filecoin.add_piece(2048, tmp_path / "piece", unsealed, 2032)
    prover, ticket, randomness = bytes(range(32)), bytes([7] * 32), bytes([9] * 31) + b"\x00"
    p1 = rust_filecoin.seal_pre_commit_phase1(2048, cache, unsealed, sealed, prover, 3, ticket, [(padded, comm_p)])
    comm_r, _ = rust_filecoin.seal_pre_commit_phase2(p1, cache, sealed)
    vanilla = rust_filecoin.generate_single_vanilla_proof(
        "winning", 2048, randomness, prover, (3, comm_r, sealed, cache)
    )
    return randomness, prover, [(3, bytes(comm_r)), (3, bytes(vanilla))]


def test_a_post_snark_whose_caller_gave_up_is_stopped(tmp_path: Path) -> None:
    """The manager makes the PoSt SNARK in a child process (services/common/proofs_process.py):
    a stopped request's SNARK is killed at once instead of running to its end; one left alone
    makes a proof that verifies."""
    cache = param_cache()
    randomness, prover, [(number, comm_r), (_, vanilla)] = _winning_vanilla(tmp_path)
    processes = ProofsProcesses(ChildSettings(str(cache), str(cache / "parents"), 0), stopped=rust_core.Cancelled)
    verifier = FilecoinVerifier(processes)
    try:
        token = rust_core.CancelToken()
        outcome: list[BaseException | bytes] = []
        thread = threading.Thread(
            target=lambda: outcome.append(
                _call(verifier.assemble, "winning", 2048, randomness, prover, [(number, vanilla)], token)
            )
        )
        thread.start()
        child = _busy_child(processes)
        stopped_at = time.monotonic()
        token.cancel()
        thread.join(5)
        assert isinstance(outcome[0], rust_core.Cancelled), outcome
        assert time.monotonic() - stopped_at < 0.5
        assert gone(child, 0.5)
        proof = verifier.assemble("winning", 2048, randomness, prover, [(number, vanilla)])
        assert verifier.verify_post("winning", 2048, randomness, prover, [(number, comm_r)], proof)
    finally:
        verifier.close()
    assert processes.children() == []


def _call(fn: Any, *args: Any) -> BaseException | bytes:
    try:
        return bytes(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - the test looks at it
        return exc


def _busy_child(processes: ProofsProcesses) -> int:
    """The child making the SNARK, once it has used 0.2 s of CPU."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in processes.children():
            if cpu_ticks(pid) > 20:
                return pid
        time.sleep(0.02)
    raise AssertionError("the SNARK's process never started working")
