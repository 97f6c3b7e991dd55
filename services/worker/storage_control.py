"""Keeping the index in step with this worker's disks: attach and detach paths, declare what is
on them, and report each path's health on a heartbeat (re-attaching a path the index forgot,
e.g. after an operator detached it or the index lost its database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from services.worker.failures import CallFailed
from services.worker.index_client import Declaration, IndexClient
from services.worker.local_store import FsStat, LocalPath, LocalStore
from services.worker.paths import PathMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Redeclared:
    storage_id: str
    declared: int
    unchanged: int
    dropped: int


class StorageControl:
    def __init__(self, local: LocalStore, index: IndexClient | None, urls: list[str]) -> None:
        self.local = local
        self.index = index
        self.urls = urls
        self.version = 0  # moves when paths change, so the manager link resends WorkerInfo
        self.announced: set[str] = set()
        # Path id -> the unexpected heartbeat failure last logged for it.
        self._failing: dict[str, str] = {}

    def require_index(self) -> IndexClient:
        if self.index is None:
            raise RuntimeError("no index configured (worker.index): storage cannot be attached or used")
        return self.index

    async def stat(self, path: LocalPath) -> FsStat:
        return await asyncio.to_thread(self.local.stat, path.id)

    async def attach(self, root: Path, init: PathMeta | None) -> tuple[LocalPath, int]:
        index = self.require_index()
        path = await asyncio.to_thread(self.local.attach, root, init)
        try:
            result = await self._announce(index, path, drop_missing=False)
        except CallFailed as exc:
            await asyncio.to_thread(self.local.detach, path.id, True)
            raise index.unavailable(exc, f"{root} was not attached") from None
        except BaseException:
            await asyncio.to_thread(self.local.detach, path.id, True)
            raise
        self.announced.add(path.id)
        self.version += 1
        log.info("storage path attached", extra={"storage_id": path.id, "path": str(root), "declared": result.declared})
        return path, result.declared + result.unchanged

    async def detach(self, storage_id: str, force: bool) -> str:
        index = self.require_index()
        path = await asyncio.to_thread(self.local.detach, storage_id, force)
        for url in self.urls:
            await index.detach(path.id, url)
        self.version += 1
        log.info("storage path detached", extra={"storage_id": path.id, "path": str(path.root)})
        return path.id

    async def redeclare(self, storage_id: str, drop_missing: bool) -> list[Redeclared]:
        index = self.require_index()
        paths = [self.local.get(storage_id)] if storage_id else list(self.local.paths.values())
        return [await self._announce(index, p, drop_missing) for p in paths]

    async def _announce(self, index: IndexClient, path: LocalPath, drop_missing: bool) -> Redeclared:
        """Attach (or refresh) the path in the index and declare every sector file on it."""
        stat = await self.stat(path)
        await index.attach(path, self.urls, stat)
        found, complete = await asyncio.to_thread(self.local.scan, path.id)
        decls = [Declaration(sector, t, primary=path.meta.can_store) for sector, t in found]
        # A type folder that could not be read hides its files: they are unknown, not gone, so
        # nothing is dropped on such a scan.
        declared, unchanged, dropped = await index.redeclare(path.id, decls, drop_missing and complete)
        return Redeclared(path.id, declared, unchanged, dropped)

    async def _beat(self, index: IndexClient, path: LocalPath) -> None:
        error = ""
        stat: FsStat | None
        try:
            stat = await self.stat(path)
        except OSError as exc:
            stat, error = None, f"stat failed: {exc}"
        if not await index.report_health(path.id, stat, error):
            log.warning("index forgot a storage path; attaching it again", extra={"storage_id": path.id})
            await self._announce(index, path, drop_missing=False)

    async def run(
        self,
        stopping: asyncio.Event,
        interval_s: float,
        on_dependency: Callable[[str, str | None], Awaitable[None]] | None = None,
    ) -> None:
        """Announces every path, then reports health every interval; a path the index does not
        know (any more) is announced again. Index outages are retried on the next beat."""
        if self.index is None:
            return
        while not stopping.is_set():
            for path in list(self.local.paths.values()):
                try:
                    if path.id not in self.announced:
                        # First announce of a path opened at start: the disk is the truth, so
                        # declarations of files deleted while the worker was down are dropped.
                        await self._announce(self.index, path, drop_missing=True)
                        self.announced.add(path.id)
                    else:
                        await self._beat(self.index, path)
                except CallFailed as exc:
                    message, extra = exc.describe(f"storage heartbeat failed; retrying in {interval_s:g} s")
                    log.warning(message, extra={"storage_id": path.id, **extra})
                    if on_dependency is not None and exc.unreachable:
                        await on_dependency(
                            "index", f"the index at {self.index.address} does not answer ({exc.status})"
                        )
                    continue
                except Exception as exc:  # noqa: BLE001 - one path's problem must not stop the loop
                    # Logged with its traceback once; the same failure on the next beats is not
                    # logged again (it would fill the log every interval) until it changes.
                    problem = f"{type(exc).__name__}: {exc}"
                    if self._failing.get(path.id) != problem:
                        self._failing[path.id] = problem
                        log.error(
                            "storage heartbeat failed", extra={"storage_id": path.id, "error": problem}, exc_info=True
                        )
                    continue
                if self._failing.pop(path.id, None) is not None:
                    log.info("storage heartbeat works again", extra={"storage_id": path.id})
                if on_dependency is not None:
                    await on_dependency("index", None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval_s)
