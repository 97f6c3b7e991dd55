"""Test-only fault injection, off unless its environment variable is set.

SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES=N: the process exits at once (as a crash would,
no clean-up) after it has sent more than N bytes of sector files to peers, over gRPC streams or
the bulk side channel (which then sends in steps of at most 1 MiB, so the exit lands in the
middle of a file). Lets the tests make a fetch source die in the middle of a stream,
deterministically.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)
ENV_SERVE_EXIT = "SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES"


class ServeFault:
    def __init__(self) -> None:
        raw = os.environ.get(ENV_SERVE_EXIT, "")
        self.limit = int(raw) if raw.isdigit() else None
        self.sent = 0
        self._lock = threading.Lock()  # side channel connections count from their threads
        if self.limit is not None:
            log.warning("test fault armed: exit after serving bytes", extra={"bytes": self.limit})

    def step(self, default: int) -> int:
        """The most bytes to send between two count() calls."""
        return default if self.limit is None else min(default, 1 << 20)

    def count(self, n: int) -> None:
        if self.limit is None:
            return
        with self._lock:
            self.sent += n
            over = self.sent > self.limit
        if over:
            log.error("test fault: exiting in the middle of a stream", extra={"sent": self.sent})
            os._exit(17)
