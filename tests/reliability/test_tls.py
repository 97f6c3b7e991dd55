"""Optional TLS (issue #8), with real processes and certificates from a throwaway CA:

- mutual TLS across the fleet: index, manager and worker each serve TLS, require a client
  certificate from the fleet CA, and call each other with theirs (worker->manager registration
  and returns, worker->index, manager->worker dispatch). A 2 KiB sector is sealed through it and
  verified. A plaintext client, a TLS client without a certificate, a client whose certificate
  another CA signed, and a client that does not trust the fleet CA are all refused.
- server-only TLS: a client without a certificate is served; plaintext is refused.
- a missing certificate file stops start-up with a message naming the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import index_pb2, index_pb2_grpc, manager_pb2, worker_pb2
from tests.reliability.certs import Authority, Pem
from tests.reliability.live import LiveFleet, admin_token, logged, start_fleet
from tests.support.fleet import service


def tls_env(ca: Authority, node: Pem, *, mutual: bool) -> dict[str, str]:
    env = {
        "SECTORSTORAGE_TLS_CERT_FILE": str(node.cert),
        "SECTORSTORAGE_TLS_KEY_FILE": str(node.key),
        "SECTORSTORAGE_TLS_CA_FILE": str(ca.ca_file),
    }
    if mutual:
        env |= {
            "SECTORSTORAGE_TLS_CLIENT_CA_FILE": str(ca.ca_file),
            "SECTORSTORAGE_TLS_CLIENT_CERT_FILE": str(node.cert),
            "SECTORSTORAGE_TLS_CLIENT_KEY_FILE": str(node.key),
        }
    return env


def credentials(trust: Authority, client: Pem | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=trust.ca_file.read_bytes())
    chain, key = client.read()
    return grpc.ssl_channel_credentials(
        root_certificates=trust.ca_file.read_bytes(), private_key=key, certificate_chain=chain
    )


def list_paths(address: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """An authenticated index call over a fresh channel: OK, or the code it failed with."""
    with sync_channel(address, admin_token(), creds) as channel:
        try:
            index_pb2_grpc.IndexServiceStub(channel).StorageList(index_pb2.StorageListRequest(), timeout=5)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
            return code
    return grpc.StatusCode.OK


def health(address: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with sync_channel(address, None, creds) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
            return code
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("pki")
    fleet_ca, rogue_ca = Authority(root, "fleet"), Authority(root, "rogue")
    return {
        "ca": fleet_ca,
        "node": fleet_ca.issue("node"),
        "client": fleet_ca.issue("operator"),
        "rogue_ca": rogue_ca,
        "rogue_client": rogue_ca.issue("operator"),
    }


@pytest.fixture(scope="module")
def mtls_fleet(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, object]) -> Iterator[LiveFleet]:
    ca, node, client = pki["ca"], pki["node"], pki["client"]
    assert isinstance(ca, Authority) and isinstance(node, Pem) and isinstance(client, Pem)
    env = tls_env(ca, node, mutual=True)
    fleet = start_fleet(
        tmp_path_factory.mktemp("mtls"),
        seal=True,
        env={"index": env, "manager": env, "worker": env},
        credentials=credentials(ca, client),
    )
    yield fleet
    fleet.stop()


def test_mutual_tls_fleet_seals_a_sector(mtls_fleet: LiveFleet) -> None:
    # start_fleet sealed and verified the sector through the manager, which dispatched every
    # task to the worker over mTLS; the worker registered and returned results over mTLS.
    assert mtls_fleet.sealed is not None and mtls_fleet.sealed.verified
    stats = mtls_fleet.manager_stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
    assert [s.state.connected for s in stats] == [True]
    # The plaintext bulk side channel stays closed under TLS: no transfer address is advertised.
    assert stats[0].info.transfer_address == ""
    info = mtls_fleet.worker_stub().Info(worker_pb2.InfoRequest(), timeout=10).info
    assert info.transfer_address == ""
    for proc in mtls_fleet.processes.values():
        assert logged(proc, '"tls": "mutual"')


def test_mutual_tls_refuses_clients_without_a_fleet_certificate(mtls_fleet: LiveFleet, pki: dict[str, object]) -> None:
    ca, client, rogue_ca, rogue_client = pki["ca"], pki["client"], pki["rogue_ca"], pki["rogue_client"]
    assert isinstance(ca, Authority) and isinstance(rogue_ca, Authority)
    assert isinstance(client, Pem) and isinstance(rogue_client, Pem)
    for name, proc in mtls_fleet.processes.items():
        assert health(proc.address, credentials(ca, client)) == grpc.StatusCode.OK, name
        refused = {
            "plaintext": health(proc.address, None),
            "no client certificate": health(proc.address, credentials(ca)),
            "client certificate from another CA": health(proc.address, credentials(ca, rogue_client)),
            "server not trusted (another CA)": health(proc.address, credentials(rogue_ca, client)),
        }
        assert all(code == grpc.StatusCode.UNAVAILABLE for code in refused.values()), (name, refused)


def test_server_tls_serves_clients_without_certificates(tmp_path: Path, pki: dict[str, object]) -> None:
    ca, node = pki["ca"], pki["node"]
    assert isinstance(ca, Authority) and isinstance(node, Pem)
    index = service("index", data_dir=tmp_path / "index", env=tls_env(ca, node, mutual=False)).start()
    try:
        assert logged(index, '"tls": "server"')
        assert list_paths(index.address, credentials(ca)) == grpc.StatusCode.OK
        assert list_paths(index.address, None) == grpc.StatusCode.UNAVAILABLE
    finally:
        index.stop()


def test_unreadable_certificate_stops_start_up(tmp_path: Path, pki: dict[str, object]) -> None:
    ca, node = pki["ca"], pki["node"]
    assert isinstance(ca, Authority) and isinstance(node, Pem)
    env = tls_env(ca, node, mutual=False) | {"SECTORSTORAGE_TLS_KEY_FILE": str(tmp_path / "missing.key")}
    with pytest.raises(RuntimeError, match="SECTORSTORAGE_TLS_KEY_FILE: cannot read"):
        service("index", data_dir=tmp_path / "index", env=env).start()
