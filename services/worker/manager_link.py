"""The worker's link to the manager: register, then heartbeat; when the manager is missing,
down or restarted, keep retrying with back-off while the worker goes on serving its peers; with
several manager addresses (managers.py), a failure moves on to the next, so the worker follows a
failover to the new leader.

Each heartbeat carries the calls running now, and the full WorkerInfo when it changed (task
types enabled/disabled, paths attached/detached). Running calls the manager says it does not
know are stopped; a manager restart makes the worker redeclare its storage and register again.
A worker that is stopping says so in its heartbeats (`shutting_down`), and `wake()` sends one at
once, so the manager stops placing work on it before the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from services.common.backoff import Backoff
from services.common.client import aio_channel
from services.common.dependency import describe_failure
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from services.worker.calls import CallId
from services.worker.managers import FailoverPacer, ManagerAddresses
from services.worker.messages import call_id_msg, call_id_of

log = logging.getLogger(__name__)
RPC_TIMEOUT_S = 10.0


def heartbeat_timeout(interval_s: float) -> float:
    """How long one heartbeat may take: two intervals, at least 5 s (a busy manager is not a dead
    one: giving up on it too soon makes the worker register again for nothing), at most
    RPC_TIMEOUT_S. A manager that froze (a long pause, a cut link that drops packets) neither
    answers nor refuses; the worker must notice well within the time the next leader gives
    workers to come back after a failover (its startup grace)."""
    return min(RPC_TIMEOUT_S, max(5.0, 2 * interval_s))


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)


async def _sleep_or_wake(stopping: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = {asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _no_dependency_report(name: str, problem: str | None) -> None:
    return None


# How often the heartbeat loop looks whether the advertised info changed.
INFO_POLL_S = 0.2


async def _nothing() -> None:
    return None


class ManagerLink:
    def __init__(
        self,
        managers: ManagerAddresses,
        token: str,
        address: str,
        session_id: str,
        worker_info: Callable[[], Awaitable[common_pb2.WorkerInfo]],
        backoff: Backoff,
        heartbeat_interval_s: float,
        info_version: Callable[[], int] = lambda: 0,
        on_dependency: Callable[[str, str | None], Awaitable[None]] = _no_dependency_report,
        running_calls: Callable[[], list[CallId]] = list,
        on_unknown_calls: Callable[[list[CallId]], None] = lambda calls: None,
        on_manager_restart: Callable[[], Awaitable[None]] = _nothing,
        shutting_down: Callable[[], bool] = lambda: False,
        proofs_backend: str = "emulated",
    ) -> None:
        self.managers = managers
        self.token = token
        self.address = address
        self.session_id = session_id
        self.worker_info = worker_info
        self.backoff = backoff
        self.pacer = FailoverPacer(managers, backoff)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.info_version = info_version
        self.on_dependency = on_dependency
        self.running_calls = running_calls
        self.on_unknown_calls = on_unknown_calls
        self.on_manager_restart = on_manager_restart
        self.shutting_down = shutting_down
        # Sent at registration: the manager refuses a worker of another backend.
        self.proofs_backend = proofs_backend
        self._wake = asyncio.Event()
        # Registrations so far (a call remembers the one it was dispatched in: confirm()); when
        # the manager last answered (registration or heartbeat, monotonic), and how long without
        # an answer makes it declare this worker gone; set (and replaced) at each heartbeat the
        # manager answers, after the calls it named unknown were aborted.
        self.session_no = 0
        self._last_answer = 0.0
        self._gone_after_s = 3 * heartbeat_interval_s
        self._answered = asyncio.Event()
        self.registered = False
        self.attempts = 0
        self.manager_session = ""

    def wake(self) -> None:
        """Sends the next heartbeat now (the worker's state changed: it is shutting down)."""
        self._wake.set()

    @property
    def manager(self) -> str:
        """The manager address in use now."""
        return self.managers.current

    def in_touch(self, session_no: int) -> bool:
        """Whether a call dispatched in registration `session_no` is surely still this worker's:
        registered since, in that same registration, and answered recently enough that the
        manager cannot have declared the worker gone (and requeued its calls elsewhere)."""
        return (
            self.registered
            and session_no == self.session_no
            # With a margin: the manager's clock started when it got the heartbeat, ours when
            # the answer came back.
            and time.monotonic() - self._last_answer < self._gone_after_s - max(1.0, self._gone_after_s / 4)
        )

    async def confirm(self, session_no: int) -> None:
        """Returns once the manager surely still wants a call dispatched in registration
        `session_no`: at once when in_touch(), else after the next heartbeat it answers (which
        lists the worker's running calls: one it ended or gave to another worker meanwhile is
        aborted here before this returns, so the waiting task gets the cancellation). A task
        calls it before a step that removes a sector's files everywhere (PC1, PC2): a call
        received before a cut-off from the manager and left waiting for its lock must not go on
        after the manager requeued it elsewhere. Waits while the manager cannot be reached."""
        if self.in_touch(session_no):
            return
        log.info("waiting for the manager to confirm a call received before a break in contact")
        while True:
            await self._answered.wait()
            if self.registered:
                return

    def _answer(self) -> None:
        """The manager answered a heartbeat (after its unknown calls were aborted)."""
        self._last_answer = time.monotonic()
        answered, self._answered = self._answered, asyncio.Event()
        answered.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            address = self.managers.current
            async with aio_channel(address, self.token) as channel:
                stub = manager_pb2_grpc.ManagerServiceStub(channel)
                try:
                    await self._session(stub, stopping, channel)
                    self.registered = False  # the session ended: register again
                    continue
                except grpc.aio.AioRpcError as exc:
                    failure = exc
                except Exception:  # noqa: BLE001 - the link must outlive any one failure
                    # Not the manager's answer (a hook that called the index, a bug): without this
                    # the task ended and the worker served on, never registered again.
                    log.exception("the session with the manager failed; registering again", extra={"manager": address})
                    self.registered = False
                    await _sleep_unless(stopping, self.pacer.failed(address)[1])
                    continue
            self.registered = False
            # Another manager to try: at once (it may be the new leader); all failed: back off.
            following, delay = self.pacer.failed(address)
            message, extra = describe_failure(
                "manager", address, failure, f"manager registration failed; retrying in {delay:.1f} s"
            )
            log.warning(
                message,
                extra={
                    "manager": address,
                    "next_manager": following,
                    "retry_in_s": round(delay, 2),
                    "attempt": self.attempts,
                    **extra,
                },
            )
            await self.on_dependency("manager", f"the manager at {address} does not answer ({failure.code().name})")
            await _sleep_unless(stopping, delay)

    async def _until_beat(self, stopping: asyncio.Event, interval: float, version: int) -> None:
        """Waits out the heartbeat interval, but beats early when asked (wake) or when what this
        worker advertises changed (a storage path attached or detached, task types toggled): the
        manager places queued work on new paths at once instead of a heartbeat later."""
        loop = asyncio.get_running_loop()
        until = loop.time() + interval
        while not stopping.is_set():
            left = until - loop.time()
            if left <= 0 or self.info_version() != version:
                return
            await _sleep_or_wake(stopping, self._wake, min(left, INFO_POLL_S))
            if self._wake.is_set():
                self._wake.clear()
                return

    async def _watch_connection(self, channel: grpc.aio.Channel) -> None:
        """Heartbeats at once whenever the connection to the manager drops (it stopped, handed
        its lead over or died): the heartbeat then fails and the worker moves on to the next
        manager, so it finds a new leader within moments instead of at its next interval. A
        drop that was nothing (an idle connection closed) costs one early heartbeat."""
        lost = (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.TRANSIENT_FAILURE)
        state = channel.get_state(try_to_connect=False)
        while state is not grpc.ChannelConnectivity.SHUTDOWN:
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=False)
            if state in lost:
                log.info("the connection to the manager dropped: heartbeat now", extra={"manager": self.manager})
                self._wake.set()

    async def _session(
        self, stub: manager_pb2_grpc.ManagerServiceAsyncStub, stopping: asyncio.Event, channel: grpc.aio.Channel
    ) -> None:
        self.attempts += 1
        version = self.info_version()
        info = await self.worker_info()
        reply = await stub.RegisterWorker(
            manager_pb2.RegisterWorkerRequest(
                info=info, address=self.address, session_id=self.session_id, proofs_backend=self.proofs_backend
            ),
            timeout=heartbeat_timeout(self.heartbeat_interval_s),
        )
        if self.manager_session and reply.manager_session_id != self.manager_session:
            await self.on_manager_restart()
        self.manager_session = reply.manager_session_id
        self.session_no += 1
        self._last_answer = time.monotonic()
        timeout = reply.heartbeat_timeout.ToTimedelta().total_seconds()
        self._gone_after_s = timeout or 3 * (
            reply.heartbeat_interval.ToTimedelta().total_seconds() or self.heartbeat_interval_s
        )
        self.registered = True
        await self.on_dependency("manager", None)
        self.pacer.succeeded()
        interval = reply.heartbeat_interval.ToTimedelta().total_seconds() or self.heartbeat_interval_s
        log.info("registered with manager", extra={"manager": self.manager, "heartbeat_s": interval})
        watch = asyncio.ensure_future(self._watch_connection(channel))
        try:
            await self._beat(stub, stopping, info, reply, interval, version)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch

    async def _beat(
        self,
        stub: manager_pb2_grpc.ManagerServiceAsyncStub,
        stopping: asyncio.Event,
        info: common_pb2.WorkerInfo,
        reply: manager_pb2.RegisterWorkerResponse,
        interval: float,
        version: int,
    ) -> None:
        """Heartbeats until the session ends (returns: register again) or fails (raises)."""
        while not stopping.is_set():
            await self._until_beat(stopping, interval, version)
            if stopping.is_set():
                return
            request = manager_pb2.WorkerHeartbeatRequest(
                worker_id=info.worker_id,
                session_id=self.session_id,
                running_calls=[call_id_msg(c) for c in self.running_calls()],
                shutting_down=self.shutting_down(),
            )
            now = self.info_version()
            if now != version:
                request.info.CopyFrom(await self.worker_info())
            try:
                beat = await stub.WorkerHeartbeat(request, timeout=heartbeat_timeout(interval))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    log.info("manager does not know this session; registering again", extra={"manager": self.manager})
                    return
                raise
            version = now
            if beat.unknown_calls:
                self.on_unknown_calls([call_id_of(c) for c in beat.unknown_calls])
            if beat.manager_session_id != reply.manager_session_id:
                log.info("manager restarted; registering again", extra={"manager": self.manager})
                return
            self._answer()
