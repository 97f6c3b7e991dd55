"""Delivery of stored call results to the manager (its Return<Method> RPCs), retried with back-off
until the manager answers OK (stored), NOT_FOUND or FAILED_PRECONDITION (it will never want
this result); then the result is acknowledged in the call store. Results survive restarts in
the call store, so delivery resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from google.protobuf.message import Message

from services.common.backoff import Backoff
from services.common.client import aio_channel
from services.common.dependency import describe_failure
from services.common.proto.sectorstorage.v1 import manager_pb2, manager_pb2_grpc, worker_pb2
from services.worker.calls import CallResult
from services.worker.callstore import CallStore, call_key
from services.worker.managers import FailoverPacer, ManagerAddresses
from services.worker.messages import stored_result_msg

log = logging.getLogger(__name__)
RPC_TIMEOUT_S = 15.0

# CallType -> (ManagerService method, its request message).
RETURN_METHODS: dict[int, tuple[str, type[Any]]] = {
    worker_pb2.CALL_TYPE_ADD_PIECE: ("ReturnAddPiece", manager_pb2.ReturnAddPieceRequest),
    worker_pb2.CALL_TYPE_SEAL_PRE_COMMIT_1: ("ReturnSealPreCommit1", manager_pb2.ReturnSealPreCommit1Request),
    worker_pb2.CALL_TYPE_SEAL_PRE_COMMIT_2: ("ReturnSealPreCommit2", manager_pb2.ReturnSealPreCommit2Request),
    worker_pb2.CALL_TYPE_SEAL_COMMIT_1: ("ReturnSealCommit1", manager_pb2.ReturnSealCommit1Request),
    worker_pb2.CALL_TYPE_SEAL_COMMIT_2: ("ReturnSealCommit2", manager_pb2.ReturnSealCommit2Request),
    worker_pb2.CALL_TYPE_FINALIZE_SECTOR: ("ReturnFinalizeSector", manager_pb2.ReturnFinalizeSectorRequest),
    worker_pb2.CALL_TYPE_RELEASE_UNSEALED: ("ReturnReleaseUnsealed", manager_pb2.ReturnReleaseUnsealedRequest),
    worker_pb2.CALL_TYPE_MOVE_STORAGE: ("ReturnMoveStorage", manager_pb2.ReturnMoveStorageRequest),
    worker_pb2.CALL_TYPE_UNSEAL_PIECE: ("ReturnUnsealPiece", manager_pb2.ReturnUnsealPieceRequest),
    worker_pb2.CALL_TYPE_FETCH: ("ReturnFetch", manager_pb2.ReturnFetchRequest),
}

# A manager answer that means "never send this again".
FINAL_CODES = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}


def return_request(stored: CallResult, worker_id: str) -> tuple[str, Any]:
    """The Return<Method> name and request for a stored result (the outcome fields of
    StoredCallResult and of the Return requests have the same names)."""
    result = stored_result_msg(stored)
    method, request_type = RETURN_METHODS[result.call_type]
    field = result.WhichOneof("outcome")
    if field is None:
        raise ValueError(f"stored result of {call_key(stored.call_id)} has no outcome")
    request = request_type(
        call_id=result.call_id,
        meta=manager_pb2.ReturnMeta(worker_id=worker_id, started_at=result.started_at, finished_at=result.finished_at),
    )
    value = getattr(result, field)
    if isinstance(value, Message):
        getattr(request, field).CopyFrom(value)
    else:
        setattr(request, field, value)
    return method, request


class ReturnSender:
    def __init__(
        self, store: CallStore, worker_id: str, managers: ManagerAddresses, token: str, backoff: Backoff
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.managers = managers
        self.token = token
        self.backoff = backoff
        self.pacer = FailoverPacer(managers, backoff)
        self._wake = asyncio.Event()
        self.delivered = 0
        # When a delivery last failed (monotonic; 0: never): a stopping worker waits for its
        # deliveries only until one fails after its drain began (the manager is down or
        # unreachable); the results then stay stored for the next start.
        self.last_failure = 0.0
        self._retry_now = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def retry_now(self) -> None:
        """Cuts a failure back-off short (a stopping worker tries its deliveries once more now,
        not after up to a minute); new results only `wake`, so an outage is not hammered."""
        self._retry_now.set()
        self._wake.set()

    @property
    def manager(self) -> str:
        return self.managers.current

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            address = self.managers.current
            async with aio_channel(address, self.token) as channel:
                await self._deliver_all(manager_pb2_grpc.ManagerServiceStub(channel), address, stopping)

    async def _deliver_all(
        self, stub: manager_pb2_grpc.ManagerServiceStub, address: str, stopping: asyncio.Event
    ) -> None:
        """Delivers through one manager until it fails (then the caller moves to the manager
        the addresses say is current) or the worker stops."""
        while not stopping.is_set():
            if address != self.managers.current:
                return  # the link found the leader elsewhere: follow it
            self._wake.clear()
            failed = False
            for result in await asyncio.to_thread(self.store.pending):
                if stopping.is_set():
                    return
                if not await self._deliver(stub, result):
                    failed = True
                    break
            if failed:
                _, delay = self.pacer.failed(address)
                if delay == 0.0:
                    return  # another manager to try at once: it may be the new leader
                self._retry_now.clear()
                retry = asyncio.ensure_future(self._retry_now.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                await asyncio.wait({retry, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                retry.cancel()
                stopper.cancel()
            else:
                self.pacer.succeeded()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()

    async def _deliver(self, stub: manager_pb2_grpc.ManagerServiceStub, result: CallResult) -> bool:
        key = call_key(result.call_id)
        try:
            method, request = return_request(result, self.worker_id)
        except (KeyError, ValueError) as exc:
            log.error("dropping an unreturnable stored result", extra={"call": key, "error": str(exc)})
            await asyncio.to_thread(self.store.ack, key)
            return True
        try:
            await getattr(stub, method)(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in FINAL_CODES:
                log.warning(
                    "manager refused a result; dropping it",
                    extra={"call": key, "method": method, "code": exc.code().name, "error": exc.details()},
                )
            else:
                message, extra = describe_failure("manager", self.manager, exc, "returning a result failed; will retry")
                log.warning(message, extra={"call": key, "method": method, **extra})
                self.last_failure = time.monotonic()
                return False
        await asyncio.to_thread(self.store.ack, key)
        self.delivered += 1
        log.info("result delivered", extra={"call": key, "method": method})
        return True
