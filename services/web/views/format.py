"""How the pages write numbers for people: sizes, ages, durations, and usage bars with a level
(ok / busy / nearly full / full) the templates colour."""

from __future__ import annotations

import time
from dataclasses import dataclass

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
# A bar at or above these fractions is shown as busy / nearly full.
WARN_AT = 0.75
NEARLY_FULL_AT = 0.85


def size(n: float) -> str:
    """1536 -> '1.5 KiB' (as sectorctl writes sizes)."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def age(at: float | None, now: float) -> str:
    """'3.2 s ago'; '-' when unknown."""
    return "-" if at is None else f"{duration(now - at)} ago"


def clock(at: float | None) -> str:
    """A UTC time of day with the date, e.g. '2026-12-06 01:02:03Z'."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True)
class Bar:
    """One usage bar: `used` of `total`, with the words shown next to it."""

    label: str
    used: float
    total: float
    text: str

    @property
    def fraction(self) -> float:
        if self.total <= 0:
            return 0.0
        return min(max(self.used / self.total, 0.0), 1.0)

    @property
    def percent(self) -> int:
        return round(self.fraction * 100)

    @property
    def level(self) -> str:
        """'ok', 'busy', 'nearly-full' or 'full' (the CSS class and what the page says)."""
        if self.total <= 0:
            return "ok"
        if self.used >= self.total:
            return "full"
        if self.fraction >= NEARLY_FULL_AT:
            return "nearly-full"
        if self.fraction >= WARN_AT:
            return "busy"
        return "ok"

    @property
    def known(self) -> bool:
        return self.total > 0
