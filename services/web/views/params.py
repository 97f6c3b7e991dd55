"""The pages' query strings and path parts, checked: a value that does not parse is a
`BadRequest` whose message says what is accepted (the 400 page shows it)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from services.common.vocabulary import TASK_BY_SHORT, parse_task_type
from services.web.model import HistoryFilter, SectorKey

_SINCE = re.compile(r"^(\d{1,6})([mhd])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400}
_WORKER = re.compile(r"^[0-9A-Za-z._:-]{1,128}$")
MAX_U64 = (1 << 64) - 1
KNOWN = {"sector", "failed", "task", "worker", "since"}


class BadRequest(Exception):
    """A query parameter or path part is not valid; the message says what to write."""


def number(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 20 or int(text) > MAX_U64:
        raise BadRequest(f"{what} must be a whole number (0 to {MAX_U64}), got {text[:40]!r}")
    return int(text)


def sector_key(miner: str, num: str) -> SectorKey:
    return SectorKey(number(miner, "the miner id"), number(num, "the sector number"))


def parse_sector(text: str) -> SectorKey:
    """'1000/5' (miner/number)."""
    miner, sep, num = text.strip().partition("/")
    if not sep:
        raise BadRequest(f"sector must be MINER/NUMBER, e.g. 1000/5, got {text[:40]!r}")
    return sector_key(miner, num)


def history_filter(query: Mapping[str, str], now: float | None = None) -> HistoryFilter:
    unknown = sorted(set(query) - KNOWN)
    if unknown:
        raise BadRequest(
            f"unknown parameter(s) {', '.join(repr(u[:40]) for u in unknown)}: use {', '.join(sorted(KNOWN))}"
        )
    sector = parse_sector(query["sector"]) if query.get("sector") else None
    failed = query.get("failed", "")
    if failed not in ("", "0", "1", "on", "true", "false"):
        raise BadRequest(f"failed must be 1 or 0, got {failed[:40]!r}")
    task = None
    if query.get("task"):
        try:
            task = parse_task_type(query["task"]).short
        except ValueError:
            raise BadRequest(
                f"unknown task type {query['task'][:40]!r}: use one of {', '.join(TASK_BY_SHORT)}"
            ) from None
    worker = query.get("worker", "")
    if worker and not _WORKER.match(worker):
        raise BadRequest("worker must be a worker id (letters, digits, '-', '.', ':')")
    since = None
    if query.get("since"):
        match = _SINCE.match(query["since"])
        if not match:
            raise BadRequest(f"since must be a duration like 30m, 6h or 7d, got {query['since'][:40]!r}")
        since = (time.time() if now is None else now) - int(match.group(1)) * _UNIT[match.group(2)]
    return HistoryFilter(
        sector=sector, failed_only=failed in ("1", "on", "true"), task=task, worker_id=worker, since=since
    )
