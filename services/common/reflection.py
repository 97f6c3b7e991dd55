"""gRPC server reflection, as both `grpc.reflection.v1` (what current grpcurl, Postman and
grpcui ask for first) and `grpc.reflection.v1alpha` (what older clients know).

grpcio-reflection implements v1alpha only. The v1 protocol is the same proto under another
package name (every message and field number identical), so one servicer answers both: the v1
method takes and returns v1alpha messages, which are byte-for-byte the v1 ones on the wire. The
v1 file descriptor is added to the descriptor pool (v1alpha's, renamed) so that reflection can
describe itself under both names.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA_SERVICE_NAME = "grpc.reflection.v1alpha.ServerReflection"
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
SERVICE_NAMES = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's file descriptor renamed to package grpc.reflection.v1."""
    proto = descriptor_pb2.FileDescriptorProto()
    alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{alpha_pb2.DESCRIPTOR.package}.", ".grpc.reflection.v1."
    proto.name = V1_FILE
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    return proto


def register_v1_descriptor(pool: descriptor_pool.DescriptorPool | None = None) -> None:
    """Adds the v1 reflection file to the pool (the default one) unless it is there already."""
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(_v1_file())


def enable_server_reflection(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Serves reflection (v1 and v1alpha) listing `service_names` and the reflection services."""
    register_v1_descriptor()
    servicer = ReflectionServicer([*service_names, *SERVICE_NAMES])
    alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=alpha_pb2.ServerReflectionRequest.FromString,
                response_serializer=alpha_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
