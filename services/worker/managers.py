"""The managers a worker may talk to. Several managers can share one PostgreSQL database; one of
them leads and the others stand by, answering UNAVAILABLE (docs/manager.md, "Failover"). A worker
configured with all their addresses (`worker.manager = "m1:9090,m2:9090"`) moves to the next one
whenever the one it uses fails, so after a failover it finds the new leader by itself, with no
load balancer in between (in Kubernetes a Service that routes to the ready leader does the same
with one address). The link and the return sender share this, so both follow the leader.
"""

from __future__ import annotations

from collections.abc import Sequence


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
