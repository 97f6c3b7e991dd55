"""Readiness: whether a service can do its job now, as the gRPC health service
`sectorstorage.v1.Ready` (Kubernetes readiness probes ask for it by name). It is SERVING while
the service serves and every dependency it needs (the index, the manager) answers, and
NOT_SERVING with the reason logged otherwise. The overall health ("" and each API service's
name) stays SERVING while the process serves: liveness must not restart a service because
another one is down."""

from __future__ import annotations

import logging

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)
READY_SERVICE = "sectorstorage.v1.Ready"


class Readiness:
    def __init__(self, servicer: health.aio.HealthServicer) -> None:
        self._servicer = servicer
        self._serving = False
        # Dependency name -> what is wrong with it; absent when it answers.
        self.problems: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        return self._serving and not self.problems

    async def set_serving(self, serving: bool) -> None:
        self._serving = serving
        await self._publish()

    async def dependency(self, name: str, problem: str | None) -> None:
        """Records that a dependency answers (None) or what is wrong with it."""
        before = self.problems.get(name)
        if problem:
            self.problems[name] = problem
        else:
            self.problems.pop(name, None)
        if (before is None) != (problem is None):
            if problem:
                log.warning(f"not ready: {problem}", extra={"dependency": name})
            else:
                log.info(f"ready again: the {name} answers", extra={"dependency": name})
            await self._publish()

    async def _publish(self) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if self.ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await self._servicer.set(READY_SERVICE, status)
