"""Every RPC of every sectorstorage service, read from the generated descriptors (so an RPC added
to the protos is covered without touching the tests), and one way to call any of them over a
channel whatever its streaming shape, with the status it ended with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from services.common.auth import Permission
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, manager_pb2, worker_pb2

# Service process name -> the generated module whose descriptor holds its service.
SERVICES = {
    "index": (index_pb2, "IndexService"),
    "manager": (manager_pb2, "ManagerService"),
    "worker": (worker_pb2, "WorkerService"),
}
# Codes a server must never answer bad input with: they mean an unhandled exception.
CRASH_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS})


@dataclass(frozen=True)
class Rpc:
    service: str  # process name: index, manager, worker
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def id(self) -> str:
        return f"{self.service}.{self.method.name}"

    @property
    def permission(self) -> Permission:
        value = self.method.GetOptions().Extensions[common_pb2.required_permission]
        return Permission(value) if value else Permission.ADMIN

    def request_class(self) -> type[Message]:
        return GetMessageClass(self.method.input_type)

    def response_class(self) -> type[Message]:
        return GetMessageClass(self.method.output_type)


def all_rpcs() -> list[Rpc]:
    out = []
    for name, (module, service) in SERVICES.items():
        for method in module.DESCRIPTOR.services_by_name[service].methods:
            out.append(Rpc(name, method))
    return out


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: int


def invoke(
    channel: grpc.Channel,
    rpc: Rpc,
    requests: Sequence[Message],
    *,
    timeout: float,
    metadata: Sequence[tuple[str, str]] | None = None,
    stall: bool = False,
    cancel_after_first: bool = False,
) -> Outcome:
    """Calls `rpc` with `requests` (one for a unary request; the whole stream for a client
    stream). `stall`: the client stream sends its messages and then neither ends nor sends more
    (a truncated upload; the deadline cuts it). `cancel_after_first`: a server stream is
    cancelled after its first message instead of being read to the end."""
    m = rpc.method
    kwargs = {
        "request_serializer": rpc.request_class().SerializeToString,
        "response_deserializer": rpc.response_class().FromString,
    }
    release = threading.Event()

    def stream() -> Iterator[Message]:
        yield from requests
        if stall:
            release.wait(timeout + 5)

    call_kwargs = {"timeout": timeout, "metadata": metadata}
    responses = 0
    try:
        if not m.client_streaming and not m.server_streaming:
            channel.unary_unary(rpc.path, **kwargs)(requests[0], **call_kwargs)
            responses = 1
        elif m.client_streaming and not m.server_streaming:
            channel.stream_unary(rpc.path, **kwargs)(stream(), **call_kwargs)
            responses = 1
        else:
            method = (
                channel.unary_stream(rpc.path, **kwargs)
                if not m.client_streaming
                else channel.stream_stream(rpc.path, **kwargs)
            )
            call = method(requests[0] if not m.client_streaming else stream(), **call_kwargs)
            for _ in call:
                responses += 1
                if cancel_after_first:
                    call.cancel()
                    return Outcome(
                        grpc.StatusCode.CANCELLED, "cancelled by the client after the first message", responses
                    )
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "", responses)  # type: ignore[attr-defined]
    finally:
        release.set()
    return Outcome(grpc.StatusCode.OK, "", responses)
