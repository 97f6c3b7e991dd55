"""PoSt that survives the fleet (real processes): two workers share one storage path (both hold
every sector), the dedicated PoSt worker preferred. A holder frozen past the read timeout hands
its sectors to the other copy; a sector whose replica is gone everywhere is skipped with each
holder's reason while the proof covers the rest and verifies; a Winning PoSt that cannot prove a
challenged sector fails fast with the reason. A manager killed in the middle of a PoSt and
started again on its database does not ask the worker again for the vanilla proofs it stored."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, worker_pb2
from tests.support.fleet import Fleet, StartService, WorkerSpec, free_port, make_fleet, retrying
from tests.support.sealing import commit, precommit
from tests.support.sectors import sector

WINDOW = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1
WINNING = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINNING_2KIB_V1
RANDOMNESS = bytes(range(32))
OTHER_RANDOMNESS = bytes(range(1, 33))


def sealed_fleet(start_service: StartService, tmp_path: Path) -> tuple[Fleet, list[common_pb2.ProvingSector]]:
    fleet = make_fleet(start_service, tmp_path, {"SECTORSTORAGE_MANAGER_POST_READ_TIMEOUT_S": "2"})
    fleet.add_worker(WorkerSpec("seal", cpus=4))
    # The PoSt worker attaches the same path (shared storage, as NFS would be): both hold it all.
    fleet.specs["post"] = WorkerSpec("post", cpus=2, task_types=["WDP", "WNP"])
    fleet.worker_ports["post"] = free_port()
    fleet.start_worker("post")
    stub_post = fleet.worker_stub("post")
    stub_post.StorageAttachLocal(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "store-seal")), timeout=30)
    fleet.worker_ids["post"] = stub_post.Info(worker_pb2.InfoRequest(), timeout=10).info.worker_id
    fleet.wait_registered()
    stub = fleet.stub()
    proving = []
    for n in (1, 2, 3):
        ref = sector(n)
        piece, p1o = precommit(fleet, ref)
        p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=60)
        commit(fleet, ref, piece, p2.commitments)
        proving.append(common_pb2.ProvingSector(sector=ref, comm_r=p2.commitments.comm_r))
    return fleet, proving


def window_post(
    fleet: Fleet, sectors: list[common_pb2.ProvingSector], randomness: bytes = RANDOMNESS
) -> manager_pb2.GenerateWindowPoStResponse:
    reply: manager_pb2.GenerateWindowPoStResponse = fleet.stub().GenerateWindowPoSt(
        manager_pb2.GenerateWindowPoStRequest(proof_type=WINDOW, randomness=randomness, sectors=sectors), timeout=60
    )
    return reply


def verifies(
    fleet: Fleet,
    sectors: list[common_pb2.ProvingSector],
    proofs: list[common_pb2.PoStProof],
    randomness: bytes = RANDOMNESS,
) -> bool:
    return bool(
        fleet.stub()
        .VerifyWindowPoSt(
            manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=sectors, proofs=proofs), timeout=30
        )
        .valid
    )


def test_a_frozen_holder_hands_its_sectors_to_the_other_copy(start_service: StartService, tmp_path: Path) -> None:
    fleet, proving = sealed_fleet(start_service, tmp_path)
    first = window_post(fleet, proving)
    assert not first.skipped and verifies(fleet, proving, list(first.proofs))
    assert [name for name, _ in fleet.worker_log_events("vanilla proofs")] == ["post"]  # the dedicated one first

    post = fleet.workers["post"].proc
    assert post is not None
    os.kill(post.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        # Another challenge (the same one would reuse the proofs the manager stored).
        second = window_post(fleet, proving, OTHER_RANDOMNESS)
        took = time.monotonic() - started
    finally:
        os.kill(post.pid, signal.SIGCONT)
    assert not second.skipped and verifies(fleet, proving, list(second.proofs), OTHER_RANDOMNESS)
    # The other copy proved them (the frozen worker may log its stale work once thawed).
    assert "seal" in [name for name, _ in fleet.worker_log_events("vanilla proofs")]
    assert took < 10, took  # the 2 s read timeout, then the other copy


def test_a_lost_replica_is_skipped_and_the_rest_proven(start_service: StartService, tmp_path: Path) -> None:
    fleet, proving = sealed_fleet(start_service, tmp_path)
    (tmp_path / "store-seal" / "sealed" / "s-t01000-2").unlink()
    reply = window_post(fleet, proving)
    [bad] = reply.skipped
    assert bad.sector.number == 2
    assert "on " in bad.reason and fleet.worker_ids["post"] in bad.reason and fleet.worker_ids["seal"] in bad.reason, (
        bad.reason
    )
    rest = [p for p in proving if p.sector.id.number != 2]
    assert len(reply.proofs) == 1 and verifies(fleet, rest, list(reply.proofs))
    assert not verifies(fleet, proving, list(reply.proofs))

    with pytest.raises(grpc.RpcError) as err:
        fleet.stub().GenerateWinningPoSt(
            manager_pb2.GenerateWinningPoStRequest(proof_type=WINNING, randomness=RANDOMNESS, sectors=[proving[1]]),
            timeout=60,
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert (err.value.details() or "").startswith("winning PoSt needs every challenged sector: 2: ")  # type: ignore[attr-defined]


def test_a_rotten_replica_is_skipped_because_its_vanilla_proof_does_not_verify(
    start_service: StartService, tmp_path: Path
) -> None:
    """Sector 2's sealed file is still there, its size right, but its bytes rotted: the holders
    make vanilla proofs from it without an error. The manager checks each proof against comm_r,
    so the sector is skipped with that reason (instead of the whole PoSt being invalid), and the
    proof covers the other two and verifies."""
    fleet, proving = sealed_fleet(start_service, tmp_path)
    sealed = tmp_path / "store-seal" / "sealed" / "s-t01000-2"
    rotten = bytes(b ^ 0xFF for b in sealed.read_bytes())
    sealed.write_bytes(rotten)
    reply = window_post(fleet, proving)
    [bad] = reply.skipped
    assert bad.sector.number == 2
    assert "does not verify against the sector's comm_r" in bad.reason, bad.reason
    rest = [p for p in proving if p.sector.id.number != 2]
    assert len(reply.proofs) == 1 and verifies(fleet, rest, list(reply.proofs))


def manager_log_events(fleet: Fleet, msg: str) -> list[dict[str, Any]]:
    out = []
    for line in fleet.manager.output:
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == msg:
                out.append(entry)
    return out


def test_vanilla_proofs_stored_before_a_manager_kill_are_not_asked_for_again(
    start_service: StartService, tmp_path: Path
) -> None:
    fleet = make_fleet(start_service, tmp_path)
    # Sector 3's vanilla proof is slow (its disk, say): the manager stores 1 and 2 meanwhile.
    fleet.add_worker(WorkerSpec("seal", cpus=4, env={"SECTORSTORAGE_TEST_FAULT_VANILLA_DELAY": "3=6"}))
    fleet.wait_registered()
    stub = fleet.stub()
    proving = []
    for n in (1, 2, 3):
        ref = sector(n)
        piece, p1o = precommit(fleet, ref)
        p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=60)
        commit(fleet, ref, piece, p2.commitments)
        proving.append(common_pb2.ProvingSector(sector=ref, comm_r=p2.commitments.comm_r))

    failed: list[BaseException] = []

    def first_try() -> None:
        try:
            window_post(fleet, proving)
        except grpc.RpcError as exc:
            failed.append(exc)

    caller = threading.Thread(target=first_try)
    caller.start()
    deadline = time.monotonic() + 60
    while not any(e.get("stored", 0) >= 2 for e in manager_log_events(fleet, "PoSt: stored vanilla proofs")):
        assert time.monotonic() < deadline, "the manager stored no vanilla proofs"
        assert caller.is_alive(), "the PoSt finished before the kill"
        time.sleep(0.05)
    # The stored rows are in the database file before the kill (not in a buffer).
    [db_file] = (tmp_path / "manager").glob("*.db")
    with sqlite3.connect(db_file) as db:
        assert db.execute("SELECT number FROM manager_vanilla_proofs ORDER BY number").fetchall() == [(1,), (2,)]
    fleet.manager.kill()
    caller.join(30)
    assert failed, "the first try should have lost its manager"
    assert [e["number"] for _, e in fleet.worker_log_events("test fault: vanilla proof")] == [1, 2, 3]

    fleet.start_manager()
    fleet.wait_registered()
    started = time.monotonic()
    reply = retrying(lambda: window_post(fleet, proving))
    assert not reply.skipped and verifies(fleet, proving, list(reply.proofs))
    # The worker was asked again only for sector 3 (its own log: one line per proof it sent,
    # and one per call with the number of sectors asked).
    assert [e["number"] for _, e in fleet.worker_log_events("test fault: vanilla proof")] == [1, 2, 3, 3]
    assert [e["sectors"] for _, e in fleet.worker_log_events("vanilla proofs")] == [3, 1]
    assert [e["reused"] for e in manager_log_events(fleet, "PoSt: reusing stored vanilla proofs")] == [2]
    print(f"retried PoSt after the restart took {time.monotonic() - started:.1f}s (sector 3's proof: 6 s)")

    # Proven once more with the same randomness: nobody is asked.
    again = window_post(fleet, proving)
    assert again.proofs == reply.proofs
    assert len(fleet.worker_log_events("vanilla proofs")) == 2
