"""The standby's forwarder (services/manager/forward.py) between real gRPC servers on loopback:
a call is relayed to the live leader with the caller's token and answered as the leader answered
it; with no leader to reach (the database unreadable, the lease run out, a call already forwarded
once) it gets UNAVAILABLE saying why and when to retry, never UNKNOWN or a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from services.common.db import DatabaseUnavailable
from services.common.proto.sectorstorage.v1 import manager_pb2, manager_pb2_grpc
from services.common.server import registration
from services.manager.forward import FORWARDED_HEADER, LeaderForwarder
from services.manager.leadership import Lease

NOW = 1_000_000.0


class Leader(manager_pb2_grpc.ManagerServiceServicer):
    """What the leader answers: SealingJobs names, in its one job's work_id, the caller's token
    and who forwarded the call."""

    async def SealingJobs(
        self, request: manager_pb2.SealingJobsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> manager_pb2.SealingJobsResponse:
        metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
        seen = f"{metadata.get('authorization', '')}|{metadata.get(FORWARDED_HEADER, '')}"
        return manager_pb2.SealingJobsResponse(jobs=[manager_pb2.SealingJob(work_id=seen)])


async def serve(servicer: object, interceptors: list[grpc.aio.ServerInterceptor]) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=interceptors)
    reg = registration(manager_pb2, manager_pb2_grpc, "ManagerService", servicer)
    reg.add_to_server(reg.servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def lease(holder: str, address: str, expires_at: float) -> Lease:
    return Lease(holder, address, 3, NOW - 10, NOW - 1, expires_at, 2)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def standby_answer(
    leader: Callable[[], Awaitable[Lease]], metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.StatusCode, str, str]:
    """The status, details and (when answered) the first job's work_id of a SealingJobs through
    a standby whose forwarder reads the lease with `leader`."""
    forwarder = LeaderForwarder("standby-1", lambda: False, leader, lambda: NOW)
    forwarder.decided.set()
    standby, address = await serve(manager_pb2_grpc.ManagerServiceServicer(), [forwarder])
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = manager_pb2_grpc.ManagerServiceStub(channel).SealingJobs(
                manager_pb2.SealingJobsRequest(), timeout=10, metadata=metadata
            )
            try:
                reply = await call
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or "", ""
            return grpc.StatusCode.OK, "", reply.jobs[0].work_id
    finally:
        await forwarder.close()
        await standby.stop(None)


def test_a_call_is_relayed_to_the_live_leader_with_the_callers_token() -> None:
    async def test() -> None:
        leader, address = await serve(Leader(), [])
        try:

            async def current() -> Lease:
                return lease("leader-1", address, NOW + 4)

            code, _, seen = await standby_answer(current, (("authorization", "Bearer t0k3n"),))
            assert code is grpc.StatusCode.OK
            assert seen == "Bearer t0k3n|standby-1"
        finally:
            await leader.stop(None)

    run(test)


@pytest.mark.parametrize(
    ("why", "expect"),
    [
        ("database", "cannot read who leads (its database is unavailable)"),
        ("expired", "no manager leads right now"),
        ("self", "no manager leads right now"),
        ("forwarded", "does not lead either"),
    ],
)
def test_with_no_leader_to_reach_a_call_gets_unavailable_saying_why(why: str, expect: str) -> None:
    async def test() -> None:
        async def current() -> Lease:
            if why == "database":
                raise DatabaseUnavailable("connection refused")
            if why == "expired":
                return lease("leader-1", "127.0.0.1:1", NOW - 0.5)
            if why == "self":
                return lease("standby-1", "127.0.0.1:1", NOW + 4)
            return lease("leader-1", "127.0.0.1:1", NOW + 4)

        metadata = ((FORWARDED_HEADER, "standby-2"),) if why == "forwarded" else ()
        code, details, _ = await standby_answer(current, metadata)
        assert code is grpc.StatusCode.UNAVAILABLE, (code, details)
        assert expect in details
        if why != "forwarded":
            assert "retry" in details or "unavailable" in details

    run(test)


def test_a_leader_that_cannot_be_reached_is_unavailable_not_unknown() -> None:
    """The lease names a leader whose port refuses connections (it just died): UNAVAILABLE."""

    async def test() -> None:
        async def current() -> Lease:
            return lease("leader-1", "127.0.0.1:1", NOW + 4)

        code, _, _ = await standby_answer(current)
        assert code is grpc.StatusCode.UNAVAILABLE

    run(test)
