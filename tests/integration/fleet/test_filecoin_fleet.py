"""The fleet on Filecoin's own proofs (issue #21, docs/filecoin-backend.md): real index, manager
and worker processes with `[proofs] backend = "filecoin"`, a 2 KiB sector sealed through the
manager from AddPiece to VerifySeal with a real Groth16 proof (rust_filecoin on the worker, the
manager's verifier on rust_filecoin too), the proofs that must not verify, commD against the
emulated backend for the same data, ReadPiece unsealing the finalized sector, Window and Winning
PoSt over two sectors (vanilla proofs from the worker, the SNARK made by the manager),
CheckProvable's tree-r-last file checks with the library's layout, and a corrupted challenged
byte making its sector faulty. And a mixed fleet: a filecoin worker is
refused by an emulated manager.

One sector is sealed for the whole module (C2 loads 1.1 GB of parameters: about a minute). The
Groth16 parameters are those of tests/unit/rust_filecoin (random, NOT the network's trusted
setup), in $SECTORSTORAGE_FIL_PARAMS or ~/.cache/sectorstorage/filecoin-params; like those
tests, this one generates them when missing (about 17 minutes once per machine), before the
fleet starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.common.vocabulary import prover_id
from services.devfleet import ServiceProcess
from tests.support import procstat
from tests.support.fleet import (
    Fleet,
    StartService,
    WorkerSpec,
    make_fleet,
    retrying,
    service_group,
    start_service,  # noqa: F401
)
from tests.support.paths import filecoin_param_cache as param_cache
from tests.support.sealing import precommit
from tests.support.sectors import MINER, P2K, SEED, TICKET, piece_data, sector

rust_filecoin = pytest.importorskip(
    "rust_filecoin",
    reason="rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`",
)

pytestmark = pytest.mark.slow

SIZE = 2048
NUMBER = 1


def filecoin_env(cache: Path) -> dict[str, str]:
    """Every service of the fleet on the filecoin backend with the tests' parameter cache (no
    generation in the services: the fixture made sure the files exist)."""
    return {
        "SECTORSTORAGE_PROOFS_BACKEND": "filecoin",
        "SECTORSTORAGE_PROOFS_PARAMETER_CACHE": str(cache),
        "SECTORSTORAGE_PROOFS_PARENT_CACHE": str(cache / "parents"),
    }


@pytest.fixture(scope="module")
def params() -> Path:
    cache = param_cache()
    rust_filecoin.configure(cache, cache / "parents", generate_up_to=SIZE)
    for circuit in ("seal", "window", "winning"):
        rust_filecoin.ensure_parameters(SIZE, circuit)
    return cache


@dataclass
class Sealed:
    fleet: Fleet
    ref: common_pb2.SectorRef
    piece: common_pb2.PieceInfo
    commitments: common_pb2.SectorCommitments
    proof: bytes
    seconds: float


@pytest.fixture(scope="module")
def sealed(params: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    """One 2 KiB sector sealed and finalized through a filecoin fleet (index, manager, one worker)."""
    root = tmp_path_factory.mktemp("filecoin-fleet")
    group = service_group(root)
    fc_env = filecoin_env(params)

    def start(
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> ServiceProcess:
        label = f"{name}-{len(group.processes)}"
        return group.start(name, label, *args, env={**fc_env, **(env or {})}, data_dir=data_dir, wrapper=wrapper)

    try:
        fleet = make_fleet(start, root)
        fleet.add_worker(WorkerSpec("fc", cpus=2))
        fleet.wait_registered()
        ref = sector(NUMBER, P2K)
        started = time.monotonic()
        piece, p1o = precommit(fleet, ref)
        stub = fleet.stub()
        p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
        c1 = stub.SealCommit1(
            manager_pb2.SealCommit1Request(
                sector=ref,
                ticket=TICKET,
                seed=SEED,
                pieces=[piece],
                comm_r=p2.commitments.comm_r,
                comm_d=p2.commitments.comm_d,
            ),
            timeout=120,
        )
        c2 = retrying(
            lambda: stub.SealCommit2(
                manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=600
            ),
            timeout=600,
        )
        verdict = stub.VerifySeal(verify_request(ref, p2.commitments, bytes(c2.proof)), timeout=60)
        seconds = time.monotonic() - started
        assert verdict.valid, verdict.reason
        stub.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=120)
        print(f"2 KiB sector sealed through the manager with the filecoin backend: {seconds:.1f} s")
        yield Sealed(fleet, ref, piece, p2.commitments, bytes(c2.proof), seconds)
    finally:
        group.close(timeout=10)


def verify_request(
    ref: common_pb2.SectorRef,
    commitments: common_pb2.SectorCommitments,
    proof: bytes,
    seed: bytes = SEED,
    comm_r: bytes | None = None,
) -> manager_pb2.VerifySealRequest:
    return manager_pb2.VerifySealRequest(
        sector=ref,
        comm_r=commitments.comm_r if comm_r is None else comm_r,
        comm_d=commitments.comm_d,
        ticket=TICKET,
        seed=seed,
        proof=proof,
    )


def test_the_seal_is_a_real_groth16_proof(sealed: Sealed) -> None:
    """The worker ran Filecoin's C2 and the manager's verifier accepted it: a tagged filecoin
    blob holding 192 bytes of Groth16 proof per partition (2 KiB: one partition)."""
    assert rust_filecoin.blob_backend(sealed.proof) == "filecoin"
    raw = rust_filecoin.groth16_proof(sealed.proof)
    assert len(raw) == 192 * 1
    # The same proof checks in this process too: the manager did not accept something else.
    c = sealed.commitments
    assert rust_filecoin.verify_seal(SIZE, c.comm_r, c.comm_d, prover_id(MINER), NUMBER, TICKET, SEED, sealed.proof)
    runs = sealed.fleet.history(sector=sealed.ref.id)
    assert {r.outcome for r in runs} == {manager_pb2.TASK_OUTCOME_SUCCEEDED}
    assert not sealed.fleet.worker_log_events("task failed")


def test_verify_seal_rejects_what_does_not_prove_the_sector(sealed: Sealed) -> None:
    stub = sealed.fleet.stub()
    c = sealed.commitments
    flipped = bytearray(sealed.proof)
    flipped[-1] ^= 0x01
    verdict = stub.VerifySeal(verify_request(sealed.ref, c, bytes(flipped)), timeout=60)
    assert not verdict.valid
    wrong_seed = bytes([SEED[0] ^ 0x01]) + SEED[1:]
    assert not stub.VerifySeal(verify_request(sealed.ref, c, sealed.proof, seed=wrong_seed), timeout=60).valid
    wrong_comm_r = bytes([c.comm_r[0] ^ 0x01]) + bytes(c.comm_r[1:])
    assert not stub.VerifySeal(verify_request(sealed.ref, c, sealed.proof, comm_r=wrong_comm_r), timeout=60).valid
    # The right one still verifies (nothing above was cached as a verdict).
    assert stub.VerifySeal(verify_request(sealed.ref, c, sealed.proof), timeout=60).valid


def test_an_emulated_proof_is_refused_naming_the_backends(sealed: Sealed, tmp_path: Path) -> None:
    """The same sector's data sealed by the emulated backend (rust_core, in this process): its
    commD is the filecoin fleet's (fr32 and commP are Filecoin's in both), and its proof does not
    verify with the filecoin manager, which says why."""
    data = piece_data(NUMBER, P2K)
    src, unsealed, cache, sealed_file = (tmp_path / n for n in ("piece", "unsealed", "cache", "sealed"))
    src.write_bytes(data)
    size, commp = rust_core.add_piece_file(src, unsealed)
    assert (size, bytes(commp)) == (SIZE, bytes(sealed.piece.commp))
    prover = prover_id(MINER)
    p1 = rust_core.seal_pre_commit_phase1(SIZE, cache, unsealed, prover, NUMBER, TICKET, [(size, bytes(commp))])
    comm_r, comm_d = rust_core.seal_pre_commit_phase2(p1, cache, sealed_file)
    assert bytes(comm_d) == bytes(sealed.commitments.comm_d)
    assert bytes(comm_r) != bytes(sealed.commitments.comm_r)  # the replicas are not the same construction
    c1 = rust_core.seal_commit_phase1(
        SIZE, cache, sealed_file, prover, NUMBER, TICKET, SEED, [(size, bytes(commp))], comm_r, comm_d
    )
    emulated = rust_core.seal_commit_phase2(c1, prover, NUMBER)
    verdict = sealed.fleet.stub().VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=sealed.ref, comm_r=comm_r, comm_d=comm_d, ticket=TICKET, seed=SEED, proof=emulated
        ),
        timeout=60,
    )
    assert not verdict.valid
    assert "emulated" in verdict.reason, verdict.reason


def test_read_piece_unseals_the_finalized_sector(sealed: Sealed) -> None:
    """Finalize dropped the unsealed copy: ReadPiece has the worker unseal with Filecoin's
    unseal_range (a relabelling of the sector) and returns the original bytes."""
    stub = sealed.fleet.stub()
    whole = common_pb2.UnpaddedByteRange(offset=0, size=2032)
    assert not stub.IsUnsealed(manager_pb2.IsUnsealedRequest(sector=sealed.ref, range=whole), timeout=30).unsealed
    stream = stub.ReadPiece(
        manager_pb2.ReadPieceRequest(
            sector=sealed.ref, range=whole, ticket=TICKET, unsealed_cid=sealed.commitments.unsealed_cid
        ),
        timeout=300,
    )
    header = next(stream).header
    data = b"".join(m.chunk.data for m in stream)
    assert header.did_unseal and header.size == 2032
    assert data == piece_data(NUMBER, P2K)
    # A part of it, again, now from the unsealed copy the unseal left.
    part = common_pb2.UnpaddedByteRange(offset=127 * 4, size=127 * 8)
    again = stub.ReadPiece(manager_pb2.ReadPieceRequest(sector=sealed.ref, range=part), timeout=60)
    assert not next(again).header.did_unseal
    assert b"".join(m.chunk.data for m in again) == piece_data(NUMBER, P2K)[127 * 4 : 127 * 12]


WINDOW = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1
WINNING = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINNING_2KIB_V1


@pytest.fixture(scope="module")
def proving(sealed: Sealed) -> list[common_pb2.ProvingSector]:
    """The sealed sector and a second one taken to PC2 (a PoSt needs no seal proof): both as
    PoSt requests name them."""
    ref = sector(2, P2K)
    _, p1o = precommit(sealed.fleet, ref)
    p2 = sealed.fleet.stub().SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120
    )
    return [
        common_pb2.ProvingSector(sector=sealed.ref, comm_r=sealed.commitments.comm_r),
        common_pb2.ProvingSector(sector=ref, comm_r=p2.commitments.comm_r),
    ]


def window_post(sealed: Sealed, proving: list[common_pb2.ProvingSector], randomness: bytes) -> Any:
    return sealed.fleet.stub().GenerateWindowPoSt(
        manager_pb2.GenerateWindowPoStRequest(proof_type=WINDOW, randomness=randomness, sectors=proving), timeout=300
    )


def verify_window(sealed: Sealed, sectors: list[common_pb2.ProvingSector], randomness: bytes, post: Any) -> bool:
    return bool(
        sealed.fleet.stub()
        .VerifyWindowPoSt(
            manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=sectors, proofs=post.proofs), timeout=60
        )
        .valid
    )


def test_window_and_winning_post_over_two_sectors(sealed: Sealed, proving: list[common_pb2.ProvingSector]) -> None:
    """The worker sends Filecoin vanilla proofs, the manager makes the SNARK and verifies it."""
    randomness = bytes(range(32))
    started = time.monotonic()
    post = window_post(sealed, proving, randomness)
    print(f"Window PoSt over 2 sectors through the manager: {time.monotonic() - started:.1f} s")
    assert len(post.proofs) == 1 and not post.skipped
    assert rust_filecoin.blob_backend(post.proofs[0].proof) == "filecoin"
    assert verify_window(sealed, proving, randomness, post)
    assert not verify_window(sealed, proving, bytes(range(1, 33)), post)
    # The same proof checks in this process too.
    public = [(p.sector.id.number, bytes(p.comm_r)) for p in proving]
    assert rust_filecoin.verify_window_post(SIZE, randomness, prover_id(MINER), public, post.proofs[0].proof)

    stub = sealed.fleet.stub()
    challenge = stub.GenerateWinningPoStSectorChallenge(
        manager_pb2.GenerateWinningPoStSectorChallengeRequest(
            proof_type=WINNING, miner=MINER, randomness=randomness, eligible_sector_count=2
        ),
        timeout=30,
    )
    assert list(challenge.indices) == rust_filecoin.generate_winning_post_sector_challenge(
        SIZE, randomness, prover_id(MINER), 2
    )
    chosen = [proving[i] for i in challenge.indices]
    started = time.monotonic()
    won = stub.GenerateWinningPoSt(
        manager_pb2.GenerateWinningPoStRequest(proof_type=WINNING, randomness=randomness, sectors=chosen), timeout=300
    )
    print(f"Winning PoSt through the manager: {time.monotonic() - started:.1f} s")
    assert stub.VerifyWinningPoSt(
        manager_pb2.VerifyWinningPoStRequest(randomness=randomness, sectors=chosen, proofs=won.proofs), timeout=60
    ).valid
    assert not stub.VerifyWinningPoSt(
        manager_pb2.VerifyWinningPoStRequest(randomness=bytes(32), sectors=chosen, proofs=won.proofs), timeout=60
    ).valid


def check_provable(sealed: Sealed, sectors: list[common_pb2.ProvingSector], expensive: bool = False) -> list[Any]:
    reply = sealed.fleet.stub().CheckProvable(
        manager_pb2.CheckProvableRequest(proof_type=WINDOW, sectors=sectors, expensive=expensive), timeout=120
    )
    return [(b.sector.number, b.reason) for b in reply.bad_sectors]


def test_check_provable_checks_the_librarys_tree_r_last_files(
    sealed: Sealed, proving: list[common_pb2.ProvingSector]
) -> None:
    """CheckProvable's cheap check compares the holder's tree-r-last files with the library's
    layout (rust_filecoin.tree_r_last_files through the manager's verifier): the finalized
    sector 1 and the PC2-only sector 2 are provable; sector 1's tree-r-last file on the worker's
    disk truncated is the wrong-size reason, removed the missing reason; restored (it is put
    back even when an assertion fails, for the next test), provable again, and a vanilla proof
    of it verifies."""
    assert check_provable(sealed, proving) == []
    [(file, size)] = rust_filecoin.tree_r_last_files(SIZE)
    name = f"s-t0{MINER}-{NUMBER}"
    cache = sealed.fleet.tmp / "store-fc" / "cache" / name
    # The worker's cache holds exactly the library's layout (finalized: sealing scratch gone).
    assert {p.name: p.stat().st_size for p in cache.iterdir() if "tree-r-last" in p.name} == {file: size}
    tree = cache / file
    original = tree.read_bytes()
    try:
        with open(tree, "r+b") as f:
            f.truncate(size // 2)
        assert check_provable(sealed, proving) == [
            (NUMBER, f"cache/{name}/{file} is wrong size (got {size // 2}, expect {size})")
        ]
        tree.write_bytes(original + bytes(32))
        assert check_provable(sealed, proving[:1]) == [
            (NUMBER, f"cache/{name}/{file} is wrong size (got {size + 32}, expect {size})")
        ]
        tree.unlink()
        assert check_provable(sealed, proving) == [
            (NUMBER, f"cache/{name}: tree-r-last files missing (found 0, expect 1)")
        ]
    finally:
        tree.write_bytes(original)
    assert check_provable(sealed, proving) == []
    assert check_provable(sealed, proving, expensive=True) == []


def test_a_corrupted_challenged_byte_makes_the_sector_faulty(
    sealed: Sealed, proving: list[common_pb2.ProvingSector]
) -> None:
    """A byte of sector 2's sealed file that this randomness challenges is flipped on the
    worker: the Window PoSt skips sector 2 with the worker's reason, and its proof covers sector
    1 only (it does not verify for both). Last in the module: it damages the sector."""
    randomness = bytes(range(2, 34))
    leaves = rust_filecoin.sector_challenges("window", SIZE, randomness, prover_id(MINER), [2])[2]
    replica = sealed.fleet.tmp / "store-fc" / "sealed" / f"s-t0{MINER}-2"
    with open(replica, "r+b") as f:
        f.seek(leaves[0] * 32)
        byte = f.read(1)
        f.seek(leaves[0] * 32)
        f.write(bytes([byte[0] ^ 0x01]))
    post = window_post(sealed, proving, randomness)
    assert [s.sector.number for s in post.skipped] == [2], post.skipped
    assert "is invalid" in post.skipped[0].reason, post.skipped[0].reason
    assert len(post.proofs) == 1
    assert verify_window(sealed, proving[:1], randomness, post)
    assert not verify_window(sealed, proving, randomness, post)


def cpu_ticks(pid: int) -> int:
    """procstat's, -1 once the process is gone (it may end between listing and reading)."""
    try:
        return procstat.cpu_ticks(pid)
    except (FileNotFoundError, ProcessLookupError):
        return -1


def test_an_aborted_c2_stops_its_proofs_process_at_once(sealed: Sealed) -> None:
    """The library has no cancellation point; the worker runs the C2 in a child process and
    kills it when the manager's Abort arrives: within a second the process is gone from /proc,
    the worker is free in WorkerStats, the caller gets the abort and the run is ABORTED, long
    before the C2 (about a minute) would have ended."""
    fleet = sealed.fleet
    proc = fleet.workers["fc"].proc
    assert proc is not None
    ref = sector(5, P2K)
    piece, p1o = precommit(fleet, ref)
    stub = fleet.stub()
    p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
    c1 = stub.SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref,
            ticket=TICKET,
            seed=SEED,
            pieces=[piece],
            comm_r=p2.commitments.comm_r,
            comm_d=p2.commitments.comm_d,
        ),
        timeout=120,
    )
    before = {pid: cpu_ticks(pid) for pid in procstat.children(proc.pid)}
    c2 = stub.SealCommit2.future(
        manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=600
    )
    deadline = time.monotonic() + 60
    busy: int | None = None
    while busy is None and time.monotonic() < deadline:
        # The child that runs the C2: one that has worked for 0.3 s since the C2 was sent.
        busy = next((p for p in procstat.children(proc.pid) if cpu_ticks(p) - before.get(p, 0) > 30), None)
        time.sleep(0.05)
    assert busy is not None, "no proofs process of the worker started the C2"
    jobs = stub.SealingJobs(manager_pb2.SealingJobsRequest(sector=ref.id), timeout=10).jobs
    [job] = [j for j in jobs if j.task_type == common_pb2.TASK_TYPE_COMMIT_2]
    aborted_at = time.monotonic()
    stub.Abort(manager_pb2.AbortRequest(call_id=job.call_id, reason="filecoin abort test"), timeout=10)
    while busy in procstat.children(proc.pid) and time.monotonic() - aborted_at < 5:
        time.sleep(0.01)
    gone_s = time.monotonic() - aborted_at
    assert busy not in procstat.children(proc.pid), "the C2's proofs process still runs 5 s after the abort"
    assert gone_s < 1.0, f"the C2's proofs process ran {gone_s:.2f} s after the abort"

    def free() -> bool:
        [w] = stub.WorkerStats(manager_pb2.WorkerStatsRequest(worker_id=fleet.worker_ids["fc"]), timeout=10).workers
        return w.tasks_running == 0 and w.cpu_used == 0 and w.mem_used_min == 0

    while not free() and time.monotonic() - aborted_at < 5:
        time.sleep(0.01)
    free_s = time.monotonic() - aborted_at
    assert free_s < 1.0, f"the worker was busy {free_s:.2f} s after the abort"
    with pytest.raises(Exception) as caught:
        c2.result(timeout=30)
    assert "filecoin abort test" in str(caught.value)
    runs = [r for r in fleet.history(task_type=common_pb2.TASK_TYPE_COMMIT_2) if r.sector.id.number == 5]
    assert [r.outcome for r in runs] == [manager_pb2.TASK_OUTCOME_ABORTED], runs
    print(f"filecoin C2 aborted: its process gone {gone_s:.3f} s, the worker free {free_s:.3f} s after the abort")


def test_a_cancelled_winning_post_request_stops_the_managers_snark(
    sealed: Sealed, proving: list[common_pb2.ProvingSector]
) -> None:
    """The manager makes the PoSt SNARK in a child process: when the caller cancels its
    GenerateWinningPoSt (a few seconds of SNARK at 2 KiB) the process is gone from /proc within a
    second, and the next request is served as usual."""
    manager = sealed.fleet.manager.proc
    assert manager is not None
    stub = sealed.fleet.stub()
    randomness = bytes(range(5, 37))
    chosen = [proving[0]]
    before = {pid: cpu_ticks(pid) for pid in procstat.children(manager.pid)}
    call = stub.GenerateWinningPoSt.future(
        manager_pb2.GenerateWinningPoStRequest(proof_type=WINNING, randomness=randomness, sectors=chosen), timeout=300
    )
    deadline = time.monotonic() + 60
    busy: int | None = None
    while busy is None and time.monotonic() < deadline and not call.done():
        busy = next((p for p in procstat.children(manager.pid) if cpu_ticks(p) - before.get(p, 0) > 20), None)
        time.sleep(0.02)
    assert busy is not None, "the manager's SNARK process never started working"
    cancelled_at = time.monotonic()
    call.cancel()
    while busy in procstat.children(manager.pid) and time.monotonic() - cancelled_at < 5:
        time.sleep(0.01)
    gone_s = time.monotonic() - cancelled_at
    assert busy not in procstat.children(manager.pid), "the SNARK process still runs 5 s after the cancel"
    assert gone_s < 1.0, f"the SNARK process ran {gone_s:.2f} s after the cancel"
    won = stub.GenerateWinningPoSt(
        manager_pb2.GenerateWinningPoStRequest(proof_type=WINNING, randomness=randomness, sectors=chosen), timeout=300
    )
    assert stub.VerifyWinningPoSt(
        manager_pb2.VerifyWinningPoStRequest(randomness=randomness, sectors=chosen, proofs=won.proofs), timeout=60
    ).valid
    print(f"GenerateWinningPoSt cancelled: the manager's SNARK process gone {gone_s:.3f} s later")


def test_a_filecoin_worker_is_refused_by_an_emulated_manager(
    start_service: StartService,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The manager answers the worker's registration FAILED_PRECONDITION naming both backends;
    the worker logs it and never counts as connected (no parameters needed for that)."""
    fleet = make_fleet(start_service, tmp_path)
    fleet.add_worker(WorkerSpec("fc", cpus=2, env=filecoin_env(param_cache())))
    deadline = time.monotonic() + 30
    refusals: list[str] = []
    while time.monotonic() < deadline and not refusals:
        refusals = [
            line
            for _, proc in fleet.worker_runs
            for line in proc.output
            if "FAILED_PRECONDITION" in line and "filecoin proofs backend" in line
        ]
        time.sleep(0.2)
    assert refusals, "the worker did not log the manager's refusal"
    entry = json.loads(refusals[0])
    assert "emulated" in json.dumps(entry)
    workers = fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
    assert not [w for w in workers if w.state.connected]
