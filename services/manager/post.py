"""Proving: Window/Winning PoSt fanned out to the workers that hold the sectors, the proof
assembled here; CheckProvable; and the pure verifications (VerifySeal, Verify*PoSt, the winning
sector challenge) through the proofs backend's verifier (verifier.py: rust_core's emulation, or
rust_filecoin with `[proofs] backend = "filecoin"`).

PoSt work is placed through the scheduler like any task, but in the queue's first classes
(Winning, then Window, ahead of every sealing task), never waiting for resources sealing tasks
hold (accounting.py), and it is not tracked as a work: a PoSt is only worth anything before its
deadline, so the caller's call is the whole life of the job. What the workers proved is kept,
though: each vanilla proof is stored as it arrives (batched, _ProofLog), keyed by proof type,
randomness, miner, sector number and comm_r, so a PoSt retried with the same proof type and
randomness (after a manager restart, or a client that gave up) asks the workers only for the
sectors not proven yet; the retention loop forgets them (post_proof_retention_s). Among the
workers that hold a sector, dedicated PoSt workers (fewest task types: e.g. only WDP/WNP, on
shared storage) are chosen first, then any schedulable holder.

With the emulated backend the proof format is rust_core's PoSt emulation (rust_core/src/porep/post.rs): a worker's vanilla
proof is `"SSPV" | u16 version | u8 kind | u64 sector size | sector section`; a PoSt proof is
`"SSPT" | u16 version | u8 kind | u64 sector size | u32 count | sections` in the order of the
request's sectors, all little endian. Assembling is concatenation, so the manager needs no
sector files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import rust_core
from services.common.errors import DomainError, Internal, Unavailable
from services.common.vocabulary import prover_id
from services.manager import worker_link
from services.manager.domain import (
    BadSector,
    ProvingSector,
    SealVerification,
    SectorId,
    TaskAssignment,
    WinningChallenge,
)
from services.manager.index_client import FileType, StorageIndex
from services.manager.jobs import JobRunner
from services.manager.resources import SealProof
from services.manager.sealing import SEALED_CACHE, Deadline, Sealing
from services.manager.selectors import Candidates, SectorKey
from services.manager.tasks import TaskType
from services.manager.validation import invalid
from services.manager.verifier import EmulatedVerifier, ProofVerifier
from services.manager.verifier import tree_r_last_part_bytes as tree_r_last_part_bytes  # test_e2e's import
from services.manager.worker_link import WorkerCallFailed
from services.manager.workers import WorkerConnection

log = logging.getLogger(__name__)


_RPC_TIMEOUT_S = 60.0
# Stored vanilla proofs are written in batches: every this many proofs, this long after the first
# unwritten one arrived, and at the end of each holder's stream (a kill loses at most this long).
PROOF_FLUSH_EVERY = 64
PROOF_FLUSH_INTERVAL_S = 0.5


class VanillaProofStore(Protocol):
    """Where vanilla proofs are kept between tries of a PoSt (ManagerStore)."""

    async def put_vanilla_proofs(
        self, proof_type: int, randomness: bytes, proofs: Sequence[tuple[int, int, bytes, bytes]], stored_at: float
    ) -> None: ...

    async def vanilla_proofs(
        self, proof_type: int, randomness: bytes, miner: int, sectors: Sequence[tuple[int, bytes]]
    ) -> dict[int, bytes]: ...


class _ProofLog:
    """The vanilla proofs of one PoSt written to the store as they arrive, in batches (every
    PROOF_FLUSH_EVERY proofs, PROOF_FLUSH_INTERVAL_S after the first unwritten one, and when
    flushed). A failed write is logged and dropped: the PoSt goes on, a retry proves those again."""

    def __init__(self, store: VanillaProofStore | None, proof_type: int, randomness: bytes) -> None:
        self.store = store
        self.proof_type = proof_type
        self.randomness = randomness
        self.stored = 0
        self._pending: list[tuple[int, int, bytes, bytes]] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    async def add(self, s: ProvingSector, proof: bytes) -> None:
        if self.store is None:
            return
        self._pending.append((s.sector.miner, s.sector.number, bytes(s.comm_r), proof))
        if len(self._pending) >= PROOF_FLUSH_EVERY:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(PROOF_FLUSH_INTERVAL_S)
        await self.flush()

    async def flush(self) -> None:
        if self.store is None:
            return
        async with self._lock:
            rows, self._pending = self._pending, []
            if not rows:
                return
            try:
                await self.store.put_vanilla_proofs(self.proof_type, self.randomness, rows, time.time())
            except Exception as exc:  # noqa: BLE001 - storing is an optimization; the PoSt goes on
                log.warning("PoSt: could not store vanilla proofs", extra={"count": len(rows), "error": str(exc)})
                return
            self.stored += len(rows)
            log.info("PoSt: stored vanilla proofs", extra={"count": len(rows), "stored": self.stored})

    async def close(self) -> None:
        """Writes what is left (even when the PoSt is being cancelled)."""
        try:
            await asyncio.shield(self.flush())
        finally:
            if self._timer is not None:
                self._timer.cancel()


# Both backends name the tree-r-last files as Lotus does (`sc-02-data-tree-r-last[-k].dat`): a
# file with this prefix that the layout does not list is counted, as a stray copy would be.
TREE_R_LAST_PREFIX = "sc-02-data-tree-r-last"


def post_proof_info(proof_type: int) -> tuple[str, SealProof]:
    """('window' | 'winning', the seal proof of the sector size) of a RegisteredPoStProof."""
    if 5 <= proof_type <= 9:
        return "window", SealProof(proof_type)
    if 10 <= proof_type <= 14:
        return "winning", SealProof(proof_type - 5)
    raise invalid(f"proof_type must be a supported Window or Winning PoSt type, got {proof_type}")


def assemble(kind: str, sector_size: int, vanilla: Sequence[bytes]) -> bytes:
    """The emulated PoSt proof from per-sector vanilla proofs, in order (rust_core owns the byte
    format); ValueError names the first unusable one."""
    return bytes(rust_core.assemble_post(kind, sector_size, list(vanilla)))


@dataclass
class _Group:
    worker_id: str
    client: WorkerConnection
    sectors: list[ProvingSector]


# Checks one vanilla proof: (sector size, randomness, prover id, (number, comm_r), proof, kind).
VanillaVerifier = Callable[[int, bytes, bytes, tuple[int, bytes], bytes, str], bool]


class Proving:
    def __init__(
        self,
        runner: JobRunner,
        sealing: Sealing,
        index: StorageIndex | None,
        store: VanillaProofStore | None = None,
        verify_vanilla: VanillaVerifier | None = None,
        verifier: ProofVerifier | None = None,
    ) -> None:
        self.runner = runner
        self.verifier: ProofVerifier = verifier or EmulatedVerifier()
        self.sealing = sealing
        self.index = index
        self.store = store
        # Every vanilla proof is checked against its sector's comm_r before it is stored or
        # used: one bad proof (a holder's rotten sealed file, a faulty worker) would make the
        # whole PoSt invalid, and, stored, every retry of it too. A bad one counts as that
        # holder failing the sector: its next copy is tried, else the sector is skipped.
        self.verify_vanilla: VanillaVerifier = verify_vanilla or self.verifier.verify_vanilla

    def _vanilla_problem(
        self, kind: str, seal: SealProof, randomness: bytes, s: ProvingSector, proof: bytes
    ) -> str | None:
        """Why a vanilla proof of sector `s` is unusable, or None. It reads Merkle paths (a
        window PoSt has thousands of sectors): callers run it off the event loop, and rust_core
        releases the GIL while it verifies."""
        try:
            ok = self.verify_vanilla(
                seal.sector_size, randomness, prover_id(s.sector.miner), (s.sector.number, bytes(s.comm_r)), proof, kind
            )
        except ValueError as exc:
            return f"its vanilla proof is malformed: {exc}"
        return None if ok else "its vanilla proof does not verify against the sector's comm_r"

    # --- PoSt --------------------------------------------------------------------------------

    async def generate_post(
        self, proof_type: int, randomness: bytes, sectors: Sequence[ProvingSector], deadline: Deadline
    ) -> tuple[bytes | None, list[BadSector]]:
        """Vanilla proofs from the sectors' holders, assembled here. Each sector is tried on its
        holders in turn (a holder that fails, or does not answer within `post_read_timeout_s`,
        hands its sectors to the next copy); a Window PoSt is then made over the sectors that
        could be proven, and the rest are returned as skipped with every holder's reason, as
        the chain expects faulty sectors to be declared. A Winning PoSt cannot skip: it fails
        with the reasons. The request was checked (convert.post_request); returns the proof
        (None when no sector could be proven) and the skipped sectors.

        Vanilla proofs stored by an earlier try with the same proof type and randomness (for
        the same comm_r) are used as they are; the workers are asked only for the others, and
        what they return is stored as it arrives."""
        kind, seal = post_proof_info(proof_type)
        vanilla = await self._stored(proof_type, randomness, sectors)
        proofs = _ProofLog(self.store, proof_type, randomness)
        try:
            skipped = await self._prove(proof_type, randomness, sectors, deadline, kind, seal, vanilla, proofs)
        finally:
            await proofs.close()
        skipped.sort(key=lambda b: b.sector.number)
        proven = [s for s in sectors if s.sector.number in vanilla]
        if kind == "winning" and skipped:
            raise Unavailable(
                "winning PoSt needs every challenged sector: "
                + "; ".join(f"{b.sector.number}: {b.reason}" for b in skipped),
            )
        if not proven:
            return None, skipped
        try:
            # Off the event loop: the filecoin backend makes the SNARK here, in a child process
            # that is killed if this request is cancelled (the caller gone, the manager stopping).
            proof = await _stoppable(
                functools.partial(
                    self.verifier.assemble,
                    kind,
                    seal.sector_size,
                    randomness,
                    prover_id(proven[0].sector.miner),
                    [(s.sector.number, vanilla[s.sector.number]) for s in proven],
                )
            )
        except (ValueError, OSError) as exc:
            raise Internal(f"the PoSt could not be made from the workers' vanilla proofs: {exc}") from None
        return proof, skipped

    async def _stored(self, proof_type: int, randomness: bytes, sectors: Sequence[ProvingSector]) -> dict[int, bytes]:
        """The sectors' vanilla proofs an earlier try of this PoSt stored, by sector number."""
        if self.store is None:
            return {}
        out: dict[int, bytes] = {}
        miners = sorted({s.sector.miner for s in sectors})
        try:
            for miner in miners:
                wanted = [(s.sector.number, bytes(s.comm_r)) for s in sectors if s.sector.miner == miner]
                out.update(await self.store.vanilla_proofs(proof_type, randomness, miner, wanted))
        except Exception as exc:  # noqa: BLE001 - the workers can prove them all again
            log.warning("PoSt: could not read stored vanilla proofs", extra={"error": str(exc)})
            return {}
        kind, seal = post_proof_info(proof_type)
        by_number = {s.sector.number: s for s in sectors}

        def unusable() -> dict[int, str]:
            problems = {
                number: self._vanilla_problem(kind, seal, randomness, by_number[number], proof)
                if number in by_number
                else "not asked"
                for number, proof in out.items()
            }
            return {number: problem for number, problem in problems.items() if problem is not None}

        for number, problem in (await asyncio.to_thread(unusable)).items():
            log.warning(
                "PoSt: a stored vanilla proof is unusable; proving again", extra={"sector": number, "error": problem}
            )
            del out[number]
        if out:
            log.info("PoSt: reusing stored vanilla proofs", extra={"reused": len(out), "sectors": len(sectors)})
        return out

    async def _prove(
        self,
        proof_type: int,
        randomness: bytes,
        sectors: Sequence[ProvingSector],
        deadline: Deadline,
        kind: str,
        seal: SealProof,
        vanilla: dict[int, bytes],
        proofs: _ProofLog,
    ) -> list[BadSector]:
        """Fills `vanilla` from the holders for the sectors it lacks; the sectors skipped."""
        task = TaskType.GENERATE_WINNING_POST if kind == "winning" else TaskType.GENERATE_WINDOW_POST
        settings = self.runner.settings
        missing = [s for s in sectors if s.sector.number not in vanilla]
        candidates, skipped = await self._holders(missing, seal, task)
        reasons: dict[int, list[str]] = {}
        reads = asyncio.Semaphore(max(1, settings.post_parallel_reads))
        pending = [s for s in missing if s.sector.number in candidates]
        while pending:
            groups: dict[str, _Group] = {}
            for s in pending:
                worker_id = candidates[s.sector.number].pop(0)
                handle = self.runner.registry.get(worker_id)
                if handle is None or handle.client is None:
                    reasons.setdefault(s.sector.number, []).append(f"worker {worker_id} went away")
                    continue
                groups.setdefault(worker_id, _Group(worker_id, handle.client, [])).sectors.append(s)

            async def prove(group: _Group) -> tuple[_Group, dict[int, bytes | str]]:
                async with reads:
                    return group, await self._vanilla(
                        group, task, proof_type, randomness, deadline, settings.post_read_timeout_s, proofs
                    )

            for group, outcome in await asyncio.gather(*[prove(g) for g in groups.values()]):
                for s in group.sectors:
                    got = outcome.get(s.sector.number)
                    if isinstance(got, bytes):
                        vanilla[s.sector.number] = got
                    else:
                        reasons.setdefault(s.sector.number, []).append(
                            f"on {group.worker_id}: {got or 'no vanilla proof returned'}"
                        )
                        if candidates[s.sector.number]:
                            log.warning(
                                "PoSt: a holder could not prove a sector; trying its next copy",
                                extra={"sector": s.sector.name, "worker": group.worker_id, "error": got},
                            )
            pending = [s for s in pending if s.sector.number not in vanilla and candidates[s.sector.number]]
        for s in missing:
            number = s.sector.number
            if number in reasons and number not in vanilla:
                skipped.append(BadSector(sector=s.sector.id, reason="; ".join(reasons[number])))
        return skipped

    async def _holders(
        self, sectors: Sequence[ProvingSector], seal: SealProof, task: TaskType
    ) -> tuple[dict[int, list[str]], list[BadSector]]:
        """Per sector, the workers to prove it on, best first; the sectors nobody can prove."""
        registry = self.runner.registry
        out: dict[int, list[str]] = {}
        skipped: list[BadSector] = []
        for s in sectors:
            holders: list[str] = []
            if self.index is None:
                holders = list(registry.workers)
            else:
                key = SectorKey(s.sector.miner, s.sector.number, seal.sector_size)
                for loc in await self.sealing.find(key, SEALED_CACHE):
                    if SEALED_CACHE <= loc.types:
                        holders.extend(w for w in registry.workers_of_path(loc.storage_id) if w not in holders)
            ranked = self._provers(holders, task)
            if not ranked:
                skipped.append(
                    BadSector(
                        sector=s.sector.id,
                        reason=f"no connected worker running {task.short} holds the sealed and cache files of {s.sector.name}",
                    )
                )
                continue
            out[s.sector.number] = ranked
        return out, skipped

    def _provers(self, holders: Sequence[str], task: TaskType) -> list[str]:
        """The holders that can prove, best first: connected with the task type enabled;
        schedulable ones first, then the most specialized (a dedicated PoSt worker), then the
        worker id."""
        ranked: list[tuple[bool, int, str]] = []
        for wid in holders:
            handle = self.runner.registry.get(wid)
            if (
                handle is None
                or not handle.connected
                or handle.client is None
                or int(task) not in handle.info.task_types
            ):
                continue
            ranked.append((not handle.schedulable, len(handle.info.task_types), wid))
        return [wid for _, _, wid in sorted(ranked)]

    async def _vanilla(
        self,
        group: _Group,
        task: TaskType,
        proof_type: int,
        randomness: bytes,
        deadline: Deadline,
        read_timeout_s: float,
        proofs: _ProofLog,
    ) -> dict[int, bytes | str]:
        """The group's vanilla proofs (or why not), each reply within read_timeout_s; each proof
        goes to `proofs` as it arrives, and they are flushed when the stream ends."""
        first = group.sectors[0].sector
        asked = {s.sector.number: s for s in group.sectors}
        out: dict[int, bytes | str] = {}
        try:
            call_id, worker = await self.runner.place(
                task, first, 0, Candidates(preferred=(group.worker_id,)), deadline.remaining()
            )
        except TimeoutError:
            return {
                s.sector.number: f"no room for {task.short} on worker {group.worker_id} before the deadline"
                for s in group.sectors
            }
        except asyncio.CancelledError:
            return {s.sector.number: "aborted" for s in group.sectors}
        stream = None
        try:
            request = self.runner.scheduler.assigned.get(call_id)
            grant = request.grant if request is not None else None
            assignment = TaskAssignment(
                first.id,
                call_id,
                "",
                1,
                grant.gpu_ordinals if grant else (),
                grant.threads if grant else 0,
                0.0,
                self.runner.leader_epoch(),
            )
            stream = worker_link.vanilla_proofs(
                group.client,
                assignment,
                proof_type,
                randomness,
                group.sectors,
                deadline.remaining() or _RPC_TIMEOUT_S * 10,
            )
            replies = stream.__aiter__()
            while True:
                try:
                    reply = await asyncio.wait_for(replies.__anext__(), read_timeout_s)
                except StopAsyncIteration:
                    break
                if reply.proof is not None:
                    sector = asked.get(reply.number)
                    if sector is None:
                        continue  # not asked of this holder: nothing to use it for
                    kind, seal = post_proof_info(proof_type)
                    problem = await asyncio.to_thread(
                        self._vanilla_problem, kind, seal, randomness, sector, reply.proof
                    )
                    if problem is not None:
                        out[reply.number] = problem
                        continue
                    out[reply.number] = reply.proof
                    await proofs.add(sector, reply.proof)
                else:
                    out[reply.number] = f"{reply.error_code}: {reply.error_message}"
        except TimeoutError:
            reason = f"worker {group.worker_id} gave no vanilla proof within {read_timeout_s:g}s (post_read_timeout_s)"
            for s in group.sectors:
                out.setdefault(s.sector.number, reason)
        except WorkerCallFailed as exc:
            reason = f"worker {group.worker_id} failed: {exc.code}: {exc.details}"
            for s in group.sectors:
                out.setdefault(s.sector.number, reason)
        finally:
            if stream is not None:
                await stream.aclose()  # cancels the worker call if it still runs
            self.runner.release(call_id)
            await asyncio.shield(proofs.flush())
        return out

    def winning_challenge(self, ch: WinningChallenge) -> list[int]:
        """Which of the miner's eligible sectors (indices) a winning PoSt must prove."""
        return self.verifier.winning_challenge(
            ch.seal.sector_size, ch.randomness, prover_id(ch.miner), ch.eligible_sector_count
        )

    @staticmethod
    def proof_problem(kind: str, proofs: Sequence[tuple[int, bytes]]) -> str | None:
        """Why the (proof type, proof) pairs of a Verify*PoSt request cannot verify as a `kind`
        PoSt before its sectors are even looked at, or None (one proof of that kind)."""
        if not proofs:
            return "no proof"
        if len(proofs) != 1:
            return f"expected one proof, got {len(proofs)}"
        proof_type = proofs[0][0]
        got_kind, _ = post_proof_info(proof_type)
        if got_kind != kind:
            return f"proof_type {proof_type} is a {got_kind} PoSt"
        return None

    def verify_post(
        self, kind: str, proof_type: int, randomness: bytes, sectors: Sequence[ProvingSector], proof: bytes
    ) -> tuple[bool, str]:
        """Whether `proof` proves the (checked) sectors for this randomness; the reason if not."""
        _, seal = post_proof_info(proof_type)
        public = [(s.sector.number, bytes(s.comm_r)) for s in sectors]
        try:
            ok = self.verifier.verify_post(
                kind, seal.sector_size, randomness, prover_id(sectors[0].sector.miner), public, proof
            )
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return ok, "" if ok else "the proof does not verify against these sectors and randomness"

    def verify_seal(self, v: SealVerification) -> tuple[bool, str]:
        try:
            ok = bool(
                self.verifier.verify_seal(
                    v.sector.proof.sector_size,
                    v.comm_r,
                    v.comm_d,
                    prover_id(v.sector.miner),
                    v.sector.number,
                    v.ticket,
                    v.seed,
                    v.proof,
                )
            )
        except ValueError as exc:
            return False, str(exc)
        return ok, "" if ok else "the proof does not verify"

    # --- CheckProvable -----------------------------------------------------------------------

    async def check_provable(
        self, proof_type: int, sectors: Sequence[ProvingSector], expensive: bool, deadline: Deadline
    ) -> list[BadSector]:
        """The sectors (checked, of a Window PoSt type) whose files are missing or damaged on
        every holder, or (expensive) whose holder cannot make a vanilla proof that verifies."""
        _, seal = post_proof_info(proof_type)
        try:
            trees = dict(self.verifier.tree_r_last_files(seal.sector_size))
        except ValueError as exc:
            raise invalid(f"proof_type {proof_type}: {exc}") from None
        semaphore = asyncio.Semaphore(16)

        async def one(s: ProvingSector) -> BadSector | None:
            async with semaphore:
                reason = await self._check_one(s, seal, trees, proof_type, expensive, deadline)
            return None if reason is None else BadSector(sector=s.sector.id, reason=reason)

        results = await asyncio.gather(*[one(s) for s in sectors])
        return [r for r in results if r is not None]

    async def _check_one(
        self,
        s: ProvingSector,
        seal: SealProof,
        trees: dict[str, int],
        proof_type: int,
        expensive: bool,
        deadline: Deadline,
    ) -> str | None:
        sid = s.sector.id
        lease: str | None = None
        if self.index is not None:
            try:
                lease = await self.index.try_read_lock(
                    sid.miner, sid.number, [FileType.SEALED, FileType.CACHE], "manager:check-provable"
                )
            except DomainError as exc:
                raise Unavailable(f"the index is unavailable: {exc}") from None
            if lease is None:
                return "can't acquire read lock"
        try:
            return await self._check_files(s, seal, trees, proof_type, expensive, deadline)
        finally:
            if lease is not None and self.index is not None:
                try:
                    await self.index.unlock(lease)
                except DomainError:
                    pass  # the lease expires on its own

    async def _check_files(
        self,
        s: ProvingSector,
        seal: SealProof,
        trees: dict[str, int],
        proof_type: int,
        expensive: bool,
        deadline: Deadline,
    ) -> str | None:
        sid = s.sector.id
        name = sid.name
        holders: list[tuple[WorkerConnection, str]] = []
        if self.index is None:
            holders = [(h.client, "") for h in self.runner.registry.workers.values() if h.connected and h.client]
        else:
            key = SectorKey(sid.miner, sid.number, seal.sector_size)
            for loc in await self.sealing.find(key, SEALED_CACHE):
                if SEALED_CACHE <= loc.types:
                    holders.extend((c, loc.storage_id) for c in self.sealing.clients_for(loc.storage_id, loc.urls))
        if not holders:
            return f"cache and/or sealed paths not found for {name}"
        # Every holder's copy is checked: the sector is provable when one copy is whole; the
        # reason lists each copy's problem otherwise, and a bad copy beside a good one is logged.
        problems: list[str] = []
        good: list[WorkerConnection] = []
        for client, storage_id in holders:
            problem = await self._check_copy(client, sid, storage_id, name, seal, trees)
            if problem is None:
                good.append(client)
            else:
                problems.append(f"{storage_id or 'a holder'}: {problem}" if len(holders) > 1 else problem)
        if not good:
            return "; ".join(problems)
        if problems:
            log.warning("a copy of a provable sector is damaged", extra={"sector": name, "problems": problems})
        if expensive:
            return await self._check_vanilla(good[0], s, seal, proof_type, deadline)
        return None

    async def _check_copy(
        self,
        client: WorkerConnection,
        sid: SectorId,
        storage_id: str,
        name: str,
        seal: SealProof,
        trees: dict[str, int],
    ) -> str | None:
        """What is wrong with one holder's sealed file and cache, or None. `trees` is the
        backend's tree-r-last layout, {file name: size} (the verifier's tree_r_last_files)."""
        try:
            sealed = await worker_link.stat_sector_file(client, sid, FileType.SEALED, storage_id)
            cache = await worker_link.stat_sector_file(client, sid, FileType.CACHE, storage_id)
        except WorkerCallFailed as exc:
            if exc.code == "NOT_FOUND":
                return f"cache and/or sealed paths not found for {name}"
            return f"stat failed on a holder: {exc.code}: {exc.details}"
        if sealed.size != seal.sector_size:
            return f"sealed/{name} is wrong size (got {sealed.size}, expect {seal.sector_size})"
        entries = cache.entries
        if "p_aux" not in entries:
            return f"cache/{name}/p_aux is missing"
        found = sorted(n for n in entries if n.startswith(TREE_R_LAST_PREFIX))
        if len(found) != len(trees):
            return f"cache/{name}: tree-r-last files missing (found {len(found)}, expect {len(trees)})"
        for tree, want in sorted(trees.items()):
            if tree not in entries:
                return f"cache/{name}/{tree} is missing"
            if entries[tree] != want:
                return f"cache/{name}/{tree} is wrong size (got {entries[tree]}, expect {want})"
        return None

    async def _check_vanilla(
        self,
        client: WorkerConnection,
        s: ProvingSector,
        seal: SealProof,
        proof_type: int,
        deadline: Deadline,
    ) -> str | None:
        randomness = bytearray(os.urandom(32))
        randomness[31] &= 0x3F
        assignment = TaskAssignment(s.sector.id, _uuid(), "", 1)
        stream = worker_link.vanilla_proofs(
            client, assignment, proof_type, bytes(randomness), [s], deadline.remaining() or _RPC_TIMEOUT_S
        )
        try:
            async for reply in stream:
                if reply.proof is None:
                    return f"generating vanilla proof: {reply.error_message}"
                if not self.verify_vanilla(
                    seal.sector_size,
                    bytes(randomness),
                    prover_id(s.sector.miner),
                    (s.sector.number, bytes(s.comm_r)),
                    reply.proof,
                    "window",
                ):
                    return "generating vanilla proof: the proof does not verify against comm_r"
        except WorkerCallFailed as exc:
            return f"generating vanilla proof: {exc.code}: {exc.details}"
        finally:
            await stream.aclose()
        return None


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


async def _stoppable(call: Callable[..., bytes]) -> bytes:
    """`call(cancel=token)` in a thread; when the awaiting request is cancelled the token is
    cancelled too, and this waits for the call to return (within moments: the backend kills
    what it runs) before the cancellation goes on."""
    token = rust_core.CancelToken()
    future = asyncio.ensure_future(asyncio.to_thread(call, cancel=token))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        token.cancel()
        with contextlib.suppress(BaseException):
            await future
        raise
