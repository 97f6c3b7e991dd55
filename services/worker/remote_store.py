"""Sector files for a task: the local copies, plus the missing ones fetched from the peers the
index names, plus new files allocated (with reserved space) in local paths.

Fetching (the reference's Remote store, over gRPC streams instead of HTTP): for each missing
type, the holders from StorageFindSector are tried best first (healthy, then highest weight);
each download goes to `<type>/fetching/<name>` in the destination path, is checked against the
size the peer announced and the CRC32C it sent for the bytes (checksum.py: corruption in flight),
and, for a sealed file or cache whose other half is local, against the sector's commitments
(content_check: corruption at rest), and only then renamed into place and declared in the index.
A failed source leaves nothing behind and the next one is tried. A semaphore bounds parallel
fetches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.common import errors
from services.worker import content_check
from services.worker.checksum import ChecksumMismatch
from services.worker.content_check import ContentMismatch
from services.worker.failures import CallFailed
from services.worker.fsutil import fsync_dir
from services.worker.index_client import IndexClient
from services.worker.local_store import LocalPath, LocalStore, NoSpace, Reservation, discard, remove_file_or_dir
from services.worker.paths import fetching_path
from services.worker.peers import Peers, TransferError
from services.worker.sectors import FileType, PathType, SectorId
from services.worker.tarstream import TarError

log = logging.getLogger(__name__)
# How long a space reservation lasts in the index if its task never releases it (a crash): longer
# than any task writes files for.
SHARED_RESERVATION_TTL_S = 48 * 3600.0


# How a peer's NOT_FOUND begins when the path is its own but the file is not there
# (serving.NotServed), as opposed to a path it does not have.
MISSING_FILE = "no local "


class SectorNotFound(Exception):
    """No copy of a needed file exists anywhere in the fleet."""


class FetchFailed(Exception):
    """Copies exist but none could be fetched; the message lists each source's failure."""


class ContentFetchFailed(FetchFailed):
    """No copy passed the content check: either every source's copy is rotten, or the other
    half (sealed file or cache) it was checked against is."""


@dataclass
class Acquired:
    """A task's sector files: paths per type, the local path each is in, what was fetched."""

    sector: SectorId
    paths: dict[FileType, Path] = field(default_factory=dict)
    storage: dict[FileType, LocalPath] = field(default_factory=dict)
    fetched: FileType = FileType(0)

    def path(self, file_type: FileType) -> Path:
        return self.paths[file_type]


class RemoteStore:
    def __init__(
        self,
        local: LocalStore,
        index: IndexClient,
        peers: Peers,
        fetch_limit: int,
        owner: str = "worker",
        check_content: bool = True,
    ) -> None:
        self.local = local
        # Whether fetched sealed files and caches are content-checked (the emulated backend's
        # check; the filecoin backend relies on the transfer's checks: proofs.py).
        self.check_content = check_content
        # Who holds this worker's space reservations in the index (its id).
        self.owner = owner
        self.index = index
        self.peers = peers
        self.fetch_slots = asyncio.Semaphore(fetch_limit)
        self._sector_locks: dict[SectorId, asyncio.Lock] = {}

    def _sector_lock(self, sector: SectorId) -> asyncio.Lock:
        lock = self._sector_locks.get(sector)
        if lock is None:
            lock = self._sector_locks[sector] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def acquire(
        self,
        sector: SectorId,
        sector_size: int,
        existing: FileType,
        allocate: FileType,
        path_type: PathType,
        move: bool = False,
    ) -> AsyncIterator[Acquired]:
        """Finds (fetching when needed) the `existing` files and allocates the `allocate` ones;
        space for everything written here is reserved until the block ends."""
        if existing & allocate:
            raise ValueError("can't both find and allocate the same sector file types")
        acq = Acquired(sector)
        reservations: list[Reservation] = []
        shared: list[tuple[str, str]] = []
        try:
            async with self._sector_lock(sector):
                missing = FileType(0)
                for t in existing.singles():
                    copies = await asyncio.to_thread(self.local.find, sector, t)
                    if copies:
                        acq.paths[t], acq.storage[t] = copies[0].file, copies[0].path
                    else:
                        missing |= t
                if missing:
                    targets, res = await asyncio.to_thread(self.local.allocate, sector, missing, sector_size, path_type)
                    reservations.append(res)
                    shared += await self._reserve_in_index(sector, res)
                    for t in missing.singles():
                        try:
                            await self.fetch(sector, t, sector_size, targets[t], move)
                        except ContentFetchFailed:
                            # The half fetched just before may be the rotten one: take it back.
                            await self._unfetch(sector, acq)
                            raise
                        acq.paths[t], acq.storage[t] = targets[t].file(t, sector), targets[t]
                        acq.fetched |= t
                if allocate:
                    targets, res = await asyncio.to_thread(
                        self.local.allocate, sector, allocate, sector_size, path_type
                    )
                    reservations.append(res)
                    shared += await self._reserve_in_index(sector, res)
                    for t in allocate.singles():
                        acq.paths[t], acq.storage[t] = targets[t].file(t, sector), targets[t]
            with self.local.using(sorted({p.id for p in acq.storage.values()})):
                yield acq
        finally:
            for res in reservations:
                res.release()
            await self._release_in_index(shared)

    async def _reserve_in_index(self, sector: SectorId, res: Reservation) -> list[tuple[str, str]]:
        """Mirrors a local reservation in the index, path by path, so that workers sharing a
        path (network storage) never over-commit it; when the index says the space is gone
        (another worker took it), the local reservation is released and NoSpace raised."""
        per_path: dict[str, int] = {}
        for held in res.held:
            per_path[held.path_id] = per_path.get(held.path_id, 0) + held.need
        made: list[tuple[str, str]] = []
        try:
            for path_id, need in sorted(per_path.items()):
                if need <= 0:
                    continue
                reservation_id = await self.index.reserve(
                    path_id, need, f"{self.owner}:{sector}", SHARED_RESERVATION_TTL_S
                )
                made.append((reservation_id, path_id))
        except CallFailed as exc:
            if exc.answered(errors.Unimplemented) and not made:
                # An index from before reservations (a rolling upgrade): the local reservation
                # alone, as before, until it is upgraded.
                log.warning("the index keeps no space reservations (older version); shared paths are not coordinated")
                return made
            res.release()
            await self._release_in_index(made)
            if exc.answered(errors.ResourceExhausted):
                raise NoSpace(f"a shared path has no room left for sector {sector}: {exc.details}") from None
            raise
        return made

    async def _release_in_index(self, reservations: list[tuple[str, str]]) -> None:
        """Ends index reservations with the path measured now (the files written), so their
        space counts as used instead of reserved at once."""
        for reservation_id, path_id in reservations:
            try:
                stat = await asyncio.to_thread(self.local.stat, path_id) if path_id in self.local.paths else None
            except OSError:
                stat = None
            try:
                await self.index.release_reservation(reservation_id, stat)
            except CallFailed as exc:  # it counts until the next report, or expires
                log.warning("could not release a space reservation in the index", extra={"error": exc.details})

    async def fetch(self, sector: SectorId, file_type: FileType, sector_size: int, dest: LocalPath, move: bool) -> None:
        """Brings one file into `dest` from the best source that works, then declares it (primary
        when moving, and then the source copy is removed)."""
        locations = await self.index.find_sector(sector, file_type)
        sources = [loc for loc in locations if loc.storage_id not in self.local.paths and loc.urls]
        if not sources:
            raise SectorNotFound(f"no copy of the {file_type.dirname} file of sector {sector} in the fleet")
        sources.sort(key=lambda loc: (not loc.healthy, -loc.weight, loc.storage_id))
        tried: list[str] = []
        stale = 0
        checked_out = 0  # sources whose copy failed the content check
        for loc in sources:
            for url in loc.urls:
                started = time.monotonic()
                try:
                    via = await self._download(url, loc.storage_id, sector, file_type, sector_size, dest)
                except CallFailed as exc:
                    missing = exc.answered(errors.NotFound) and exc.details.startswith(MISSING_FILE)
                    if missing:
                        # The holder is up, serves that path and has no such file: the index's
                        # declaration is stale (e.g. the file was removed while the index was
                        # down). Drop it, so that no reader tries it again, and look elsewhere.
                        stale += 1
                        await self._drop_stale(loc.storage_id, sector, file_type, url, exc.details)
                    tried.append(f"{url} ({loc.storage_id}): {exc.status}: {exc.details}")
                    log.warning(
                        "fetch from a source failed; trying the next",
                        extra={
                            "sector": str(sector),
                            "type": file_type.dirname,
                            "source": url,
                            "storage_id": loc.storage_id,
                            "error": tried[-1],
                        },
                    )
                    if missing:
                        break  # the path has no copy: its other urls would say the same
                    continue
                except (TransferError, TarError, OSError, ContentMismatch, ChecksumMismatch) as exc:
                    # (A checksum mismatch is the transfer's fault, not evidence against the other
                    # half: it does not count towards ContentFetchFailed.)
                    checked_out += isinstance(exc, ContentMismatch)
                    detail = str(exc)
                    log.warning(
                        "fetch from a source failed; trying the next",
                        extra={
                            "sector": str(sector),
                            "type": file_type.dirname,
                            "source": url,
                            "storage_id": loc.storage_id,
                            "error": detail,
                        },
                    )
                    tried.append(f"{url} ({loc.storage_id}): {detail}")
                    continue
                await self.index.declare(dest.id, sector, file_type, primary=move)
                if move:
                    try:
                        await self.peers.remove(url, sector, file_type, loc.storage_id)
                    except CallFailed as exc:
                        log.warning(
                            "could not remove the source copy after a move",
                            extra={"source": url, "error": exc.details},
                        )
                log.info(
                    "fetched",
                    extra={
                        "sector": str(sector),
                        "type": file_type.dirname,
                        "source": url,
                        "dest": dest.id,
                        "via": via,
                        "seconds": round(time.monotonic() - started, 3),
                    },
                )
                return
        if stale == len(sources):
            raise SectorNotFound(
                f"no copy of the {file_type.dirname} file of sector {sector} in the fleet (stale declarations dropped: "
                + "; ".join(tried)
                + ")"
            )
        failed = ContentFetchFailed if checked_out == len(tried) else FetchFailed
        raise failed(f"could not fetch the {file_type.dirname} file of sector {sector}: " + "; ".join(tried))

    async def _unfetch(self, sector: SectorId, acq: Acquired) -> None:
        """Undeclares and removes the copies this acquire fetched (before a content failure of
        their other half: a copy that may be rotten is never left declared)."""
        for t in acq.fetched.singles():
            path, local = acq.paths.pop(t), acq.storage.pop(t)
            # Removed for good before it is undeclared: a crash in between leaves a stale
            # declaration (readers drop those), never an undeclared file a rescan would declare.
            await asyncio.to_thread(_remove_durably, path)
            await self.index.drop(local.id, sector, t)
            log.warning(
                "took back a fetched copy: its other half failed the content check",
                extra={"sector": str(sector), "type": t.dirname, "path": local.id},
            )
        acq.fetched = FileType(0)

    async def _drop_stale(self, storage_id: str, sector: SectorId, file_type: FileType, url: str, detail: str) -> None:
        try:
            await self.index.drop(storage_id, sector, file_type)
            log.warning(
                "dropped a stale declaration: its holder has no such file",
                extra={
                    "sector": str(sector),
                    "type": file_type.dirname,
                    "source": url,
                    "storage_id": storage_id,
                    "error": detail,
                },
            )
        except CallFailed as exc:
            log.warning("could not drop a stale declaration", extra={"storage_id": storage_id, "error": exc.details})

    async def _download(
        self, url: str, storage_id: str, sector: SectorId, file_type: FileType, sector_size: int, dest: LocalPath
    ) -> str:
        """Downloads into the temporary name, then renames into place; returns how the bytes
        came ("bulk", "grpc" or "tar")."""
        tmp = fetching_path(dest.root, file_type, sector)
        final = dest.file(file_type, sector)
        tmp.parent.mkdir(exist_ok=True)
        async with self.fetch_slots:
            await asyncio.to_thread(remove_file_or_dir, tmp)
            try:
                if file_type == FileType.CACHE:
                    tmp.mkdir()
                    await self.peers.download_dir(url, sector, storage_id, tmp)
                    via = "tar"
                else:
                    expect = sector_size if file_type == FileType.SEALED else None
                    via = await self.peers.download_file(
                        url,
                        sector,
                        file_type,
                        storage_id,
                        tmp,
                        expect_size=expect,
                        sparse=file_type == FileType.UNSEALED,
                    )
                await asyncio.to_thread(self._check_content, sector, file_type, sector_size, tmp)
                await asyncio.to_thread(_replace, tmp, final)
                return via
            except BaseException:
                # Discarded (renamed, deleted in the background): an aborted fetch is over at once.
                await asyncio.shield(asyncio.to_thread(discard, tmp))
                raise

    def _check_content(self, sector: SectorId, file_type: FileType, sector_size: int, fetched: Path) -> None:
        """Refuses a fetched sealed file or cache that disagrees with its partner (see
        content_check); the caller discards it and tries the next source."""
        if not self.check_content:
            return
        partner_type = {FileType.SEALED: FileType.CACHE, FileType.CACHE: FileType.SEALED}.get(file_type)
        copies = self.local.find(sector, partner_type) if partner_type is not None else []
        reason = content_check.problem(sector, sector_size, file_type, fetched, copies[0].file if copies else None)
        if reason is not None:
            raise ContentMismatch(f"content check failed, copy not declared: {reason}")


def _remove_durably(path: Path) -> None:
    remove_file_or_dir(path)
    fsync_dir(path.parent)


def _replace(tmp: Path, final: Path) -> None:
    remove_file_or_dir(final)
    tmp.rename(final)
    fsync_dir(final.parent)
