"""Checks for the protobuf well-known time types in requests: their conversion methods raise
(ValueError, OverflowError) on values outside the protobuf range, which a handler must turn into
INVALID_ARGUMENT rather than let escape as an internal error."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

# The range protobuf defines for Duration.seconds: +-10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000


def duration_problem(d: Duration) -> str | None:
    """Why `d` is not a valid Duration, or None when it is."""
    if not -(10**9) < d.nanos < 10**9:
        return f"nanos {d.nanos} is outside (-1e9, 1e9)"
    if abs(d.seconds) > MAX_DURATION_SECONDS:
        return f"seconds {d.seconds} is beyond +-{MAX_DURATION_SECONDS}"
    if (d.seconds > 0 > d.nanos) or (d.seconds < 0 < d.nanos):
        return "seconds and nanos have different signs"
    return None


def duration_seconds(d: Duration) -> float:
    """Seconds of a Duration already checked with duration_problem."""
    return d.seconds + d.nanos / 1e9
