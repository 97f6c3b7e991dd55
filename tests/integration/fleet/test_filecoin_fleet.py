"""The fleet on Filecoin's own proofs (issue #21, docs/filecoin-backend.md): real index, manager
and worker processes with `[proofs] backend = "filecoin"`, a 2 KiB sector sealed through the
manager from AddPiece to VerifySeal with a real Groth16 proof (rust_filecoin on the worker, the
manager's verifier on rust_filecoin too), the proofs that must not verify, commD against the
emulated backend for the same data, ReadPiece unsealing the finalized sector, and what is not
wired (a PoSt assembled from vanilla proofs) refused with a clear status. And a mixed fleet: a
filecoin worker is refused by an emulated manager.

One sector is sealed for the whole module (C2 loads 1.1 GB of parameters: about a minute). The
Groth16 parameters are those of tests/unit/rust_filecoin (random, NOT the network's trusted
setup), in $SECTORSTORAGE_FIL_PARAMS or ~/.cache/sectorstorage/filecoin-params; like those
tests, this one generates them when missing (about 17 minutes once per machine), before the
fleet starts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.common.vocabulary import prover_id
from services.devfleet import ServiceProcess
from tests.support.fleet import (
    Fleet,
    StartService,
    WorkerSpec,
    make_fleet,
    retrying,
    service_group,
    start_service,  # noqa: F401
)
from tests.support.sealing import precommit
from tests.support.sectors import MINER, P2K, SEED, TICKET, piece_data, sector

rust_filecoin = pytest.importorskip(
    "rust_filecoin",
    reason="rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`",
)

pytestmark = pytest.mark.slow

SIZE = 2048
NUMBER = 1


def param_cache() -> Path:
    env = os.environ.get("SECTORSTORAGE_FIL_PARAMS")
    return Path(env) if env else Path.home() / ".cache" / "sectorstorage" / "filecoin-params"


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


def test_post_is_refused_as_not_wired(sealed: Sealed) -> None:
    """The manager assembles a PoSt from the workers' vanilla proofs, which the filecoin backend
    does not do yet: FAILED_PRECONDITION naming it, not an emulated proof."""
    proving = [common_pb2.ProvingSector(sector=sealed.ref, comm_r=sealed.commitments.comm_r)]
    with pytest.raises(grpc.RpcError) as err:
        sealed.fleet.stub().GenerateWindowPoSt(
            manager_pb2.GenerateWindowPoStRequest(
                proof_type=common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1,
                randomness=bytes(31) + b"\x00",
                sectors=proving,
            ),
            timeout=60,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "filecoin" in (err.value.details() or "")


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
