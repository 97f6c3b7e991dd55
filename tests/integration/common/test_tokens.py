"""Tokens against real services: the audience names the fleet (fleets that share a key refuse
each other's tokens), expired tokens are refused, and the signing key can be rotated without an
outage (services accept `auth.previous_secrets` while tokens are re-issued, then drop them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.common.auth import Permission, create_token
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import index_pb2, index_pb2_grpc
from services.devfleet import ServiceProcess

OLD = "old-fleet-key-0123456789abcdef-0123456789abcdef"
NEW = "new-fleet-key-0123456789abcdef-0123456789abcdef"


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for proc in started:
        proc.kill()


def index(processes: list[ServiceProcess], data_dir: Path, secret: str, **env: str) -> ServiceProcess:
    proc = ServiceProcess(name="index", data_dir=data_dir, args=(), env=env, secret=secret)
    processes.append(proc)
    return proc.start()


def call(proc: ServiceProcess, token: str) -> grpc.StatusCode | str:
    """OK, or the refusal's code and message."""
    with sync_channel(proc.address, token) as channel:
        try:
            index_pb2_grpc.IndexServiceStub(channel).StorageList(index_pb2.StorageListRequest(), timeout=10)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    return grpc.StatusCode.OK


def test_audience_and_expiry(processes: list[ServiceProcess], tmp_path: Path) -> None:
    proc = index(processes, tmp_path / "a", OLD, SECTORSTORAGE_AUTH_FLEET="fleet-a")
    assert call(proc, create_token(OLD.encode(), Permission.READ, audience="fleet-a")) == grpc.StatusCode.OK
    other = call(proc, create_token(OLD.encode(), Permission.ADMIN, audience="fleet-b"))
    assert isinstance(other, str) and other.startswith("UNAUTHENTICATED: token is for another fleet"), other
    default = call(proc, create_token(OLD.encode(), Permission.ADMIN))
    assert isinstance(default, str) and "another fleet" in default
    expired = call(proc, create_token(OLD.encode(), Permission.ADMIN, audience="fleet-a", ttl_seconds=-1))
    assert isinstance(expired, str) and expired.startswith("UNAUTHENTICATED: token expired"), expired


def test_rotating_the_key(processes: list[ServiceProcess], tmp_path: Path) -> None:
    by_old = create_token(OLD.encode(), Permission.READ)
    by_new = create_token(NEW.encode(), Permission.READ)
    before = index(processes, tmp_path / "i", OLD)
    assert call(before, by_old) == grpc.StatusCode.OK and call(before, by_new) != grpc.StatusCode.OK
    before.stop()
    # Step 1: the new key signs, the old one is still accepted (rolled out to every service).
    during = index(processes, tmp_path / "i", NEW, SECTORSTORAGE_AUTH_PREVIOUS_SECRETS=f'["{OLD}"]')
    assert call(during, by_old) == grpc.StatusCode.OK and call(during, by_new) == grpc.StatusCode.OK
    during.stop()
    # Step 2: tokens re-issued; the old key is dropped and its tokens stop working.
    after = index(processes, tmp_path / "i", NEW)
    assert call(after, by_new) == grpc.StatusCode.OK
    refused = call(after, by_old)
    assert isinstance(refused, str) and refused.startswith("UNAUTHENTICATED: token signature does not match"), refused
