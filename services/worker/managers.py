"""The managers a worker may talk to. Several managers can share one PostgreSQL database; one of
them leads and the others stand by, forwarding the API to it (docs/manager.md, "Failover"). A
worker configured with all their addresses (`worker.manager = "m1:9090,m2:9090"`) moves to the
next one whenever the one it uses fails (a dead manager, or a standby that cannot reach a leader
yet), so after a failover it finds the new leader by itself, with no load balancer in between (in
Kubernetes a Service that routes to the ready leader does the same with one address). The link and
the return sender share this, so both follow the leader.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.backoff import Backoff


class ManagerAddresses:
    def __init__(self, addresses: Sequence[str]) -> None:
        cleaned = [a.strip() for a in addresses if a.strip()]
        if not cleaned:
            raise ValueError("no manager address given")
        self.addresses = list(dict.fromkeys(cleaned))
        self._current = 0

    @classmethod
    def parse(cls, text: str) -> ManagerAddresses:
        """`host:port[,host:port...]`, as `worker.manager` holds it."""
        return cls(text.split(","))

    @property
    def current(self) -> str:
        return self.addresses[self._current]

    def failed(self, address: str) -> str:
        """The manager at `address` did not answer (or stands by): the next one is tried from
        now on, unless another caller already moved on. Returns the address to use."""
        if address == self.current:
            self._current = (self._current + 1) % len(self.addresses)
        return self.current

    def __str__(self) -> str:
        return ",".join(self.addresses)


class FailoverPacer:
    """How long one caller (the link, the return sender) waits before its next try after a
    failure: nothing while some address of the list has not failed since the last success (the
    next one may be the new leader), a growing back-off once every one has failed in a row (no
    manager leads yet: spinning through the list would only burn CPU and flood the log)."""

    def __init__(self, managers: ManagerAddresses, backoff: Backoff) -> None:
        self.managers = managers
        self.backoff = backoff
        self._misses = 0

    def failed(self, address: str) -> tuple[str, float]:
        """The manager at `address` failed: the address to try next, and how long to wait first."""
        following = self.managers.failed(address)
        self._misses += 1
        if following != address and self._misses < len(self.managers.addresses):
            return following, 0.0
        self._misses = 0
        return following, self.backoff.next_delay()

    def succeeded(self) -> None:
        self._misses = 0
        self.backoff.reset()
