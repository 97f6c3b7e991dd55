"""Exponential back-off with full jitter, for loops that retry a peer that may be down."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    _current: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        """The next wait: grows by `factor` per failure up to `maximum`, jittered so that a fleet
        restarting together does not retry in lock-step."""
        self._current = self.initial if self._current == 0 else min(self.maximum, self._current * self.factor)
        return random.uniform(self._current / 2, self._current)

    def reset(self) -> None:
        self._current = 0.0
