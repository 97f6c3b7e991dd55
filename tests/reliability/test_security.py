"""Security against live services (issue #8).

- A table over every RPC of every service, read from the descriptors (a new RPC is covered
  without touching this file): no token, a token signed with another key, an expired one,
  malformed ones (garbage, wrong algorithm, `alg: none`, no permissions claim, wrong scheme) are
  UNAUTHENTICATED; a valid token one level below the RPC's `required_permission` is
  PERMISSION_DENIED; an admin token, and a token listing only the required permission or only a
  higher one, gets past authentication. Requests are empty: the check
  must come before any validation. Health and reflection answer without a token.
- The worker's file-serving RPCs serve, stat, report on or delete only real sector files of a
  known type inside attached paths: traversal and absolute storage ids, a symlink planted in
  sealed/, a type folder that links out of the path, unknown types are all refused, and nothing
  outside the path is read or deleted.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.auth import DEFAULT_FLEET, Permission, create_token
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from tests.reliability.live import LiveFleet, call_code, start_fleet
from tests.reliability.rpcs import Rpc, all_rpcs, invoke
from tests.support.auth import TEST_SECRET

SECRET = TEST_SECRET.encode()
RPCS = all_rpcs()
ST = common_pb2.SectorFileType
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


def _claims(**extra: object) -> dict[str, object]:
    return {"sub": "attacker", "iat": int(time.time()), "perms": ["read", "write", "admin"], **extra}


def _hs512() -> str:
    """Signed with the fleet key, but with HS512 (the services accept HS256 only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns the test key is short for SHA-512
        return jwt.encode(_claims(), SECRET, algorithm="HS512")


# Credentials that must all be refused as UNAUTHENTICATED, whatever the RPC.
BAD_CREDENTIALS: dict[str, list[tuple[str, str]]] = {
    "no token": [],
    "other key": [
        ("authorization", "Bearer " + create_token(b"another-fleet-key-0123456789abcdef-0123", Permission.ADMIN))
    ],
    "expired": [("authorization", "Bearer " + create_token(SECRET, Permission.ADMIN, ttl_seconds=-60))],
    "garbage": [("authorization", "Bearer not-a-jwt")],
    "truncated": [("authorization", "Bearer " + create_token(SECRET, Permission.ADMIN)[:-10])],
    "wrong alg": [("authorization", "Bearer " + _hs512())],
    "alg none": [("authorization", "Bearer " + jwt.encode(_claims(), None, algorithm="none"))],
    "no perms claim": [
        ("authorization", "Bearer " + jwt.encode({"sub": "x", "aud": DEFAULT_FLEET}, SECRET, algorithm="HS256"))
    ],
    "other fleet": [("authorization", "Bearer " + create_token(SECRET, Permission.ADMIN, audience="another-fleet"))],
    "no fleet": [("authorization", "Bearer " + jwt.encode(_claims(), SECRET, algorithm="HS256"))],
    "basic scheme": [("authorization", "Basic " + create_token(SECRET, Permission.ADMIN))],
    "empty bearer": [("authorization", "Bearer ")],
}


def below(permission: Permission) -> str:
    """A valid token granting everything below `permission` (nothing below READ)."""
    if permission == Permission.READ:
        return jwt.encode(
            {"sub": "no-perms", "iat": int(time.time()), "perms": [], "aud": DEFAULT_FLEET}, SECRET, algorithm="HS256"
        )
    return create_token(SECRET, Permission(permission - 1), subject="one-level-below")


def only(permission: Permission) -> str:
    """A valid token whose `perms` lists this one permission and nothing below it."""
    return jwt.encode(
        {
            "sub": f"only-{permission.name.lower()}",
            "iat": int(time.time()),
            "perms": [permission.name.lower()],
            "aud": DEFAULT_FLEET,
        },
        SECRET,
        algorithm="HS256",
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFleet]:
    fleet = start_fleet(tmp_path_factory.mktemp("security"), seal=False)
    yield fleet
    fleet.stop()


@pytest.fixture(scope="module")
def bare(fleet: LiveFleet) -> Iterator[dict[str, grpc.Channel]]:
    """Token-less channels: each call brings its own metadata."""
    channels = {name: sync_channel(p.address, None) for name, p in fleet.processes.items()}
    yield channels
    for channel in channels.values():
        channel.close()


@pytest.mark.parametrize("rpc", RPCS, ids=[r.id for r in RPCS])
def test_every_rpc_needs_a_valid_token_with_its_permission(bare: dict[str, grpc.Channel], rpc: Rpc) -> None:
    channel = bare[rpc.service]
    empty = [rpc.request_class()()]
    for label, metadata in BAD_CREDENTIALS.items():
        outcome = invoke(channel, rpc, empty, timeout=5, metadata=metadata)
        assert outcome.code == UNAUTH, f"{rpc.id} with {label}: {outcome.code.name} {outcome.details}"
    outcome = invoke(channel, rpc, empty, timeout=5, metadata=[("authorization", "Bearer " + below(rpc.permission))])
    assert outcome.code == DENIED, (
        f"{rpc.id} one level below {rpc.permission.name}: {outcome.code.name} {outcome.details}"
    )
    assert rpc.permission.name.lower() in outcome.details
    admin = [("authorization", "Bearer " + create_token(SECRET, Permission.ADMIN))]
    outcome = invoke(channel, rpc, empty, timeout=1, metadata=admin)
    assert outcome.code not in (UNAUTH, DENIED), f"{rpc.id} refused an admin token: {outcome.details}"
    # A token listing one permission, the required one or a higher one, is enough: permissions
    # are ordered (read < write < admin), whatever the token lists below its highest.
    for granted in Permission:
        if granted >= rpc.permission:
            outcome = invoke(channel, rpc, empty, timeout=1, metadata=[("authorization", "Bearer " + only(granted))])
            assert outcome.code not in (UNAUTH, DENIED), (
                f"{rpc.id} refused a token listing only {granted.name}: {outcome.details}"
            )


def test_health_and_reflection_are_open(bare: dict[str, grpc.Channel]) -> None:
    for name, channel in bare.items():
        for metadata in ([], BAD_CREDENTIALS["garbage"]):
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5, metadata=metadata
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        services = {s.name for s in next(stream).list_services_response.service}
        assert f"sectorstorage.v1.{name.capitalize()}Service" in services
        # v1 (the same messages on the wire), with no token and with a garbage one.
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        for metadata in ([], BAD_CREDENTIALS["garbage"]):
            reply = next(
                v1(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5, metadata=metadata)
            )
            assert f"sectorstorage.v1.{name.capitalize()}Service" in {
                s.name for s in reply.list_services_response.service
            }


def test_file_serving_only_serves_sector_files_inside_attached_paths(fleet: LiveFleet, tmp_path: Path) -> None:
    w = fleet.worker_stub()
    root, storage_id = fleet.storage, fleet.storage_id
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(b"top secret" * 300)
    miner = 31_337

    def sid(n: int) -> common_pb2.SectorId:
        return common_pb2.SectorId(miner=miner, number=n)

    def ref(n: int) -> common_pb2.SectorRef:
        return common_pb2.SectorRef(id=sid(n), proof_type=common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1)

    def name(n: int) -> str:
        return f"s-t0{miner}-{n}"

    # Sector 1: a real sealed file. Sector 2: sealed/ holds a symlink to a file outside.
    (root / "sealed" / name(1)).write_bytes(b"\1" * 2048)
    (root / "sealed" / name(2)).symlink_to(secret)
    read = lambda n, t=ST.SECTOR_FILE_TYPE_SEALED, storage="": w.ReadSectorFile(  # noqa: E731
        worker_pb2.ReadSectorFileRequest(sector=sid(n), type=t, storage_id=storage), timeout=10
    )
    assert b"".join(m.chunk.data for m in read(1)) == b"\1" * 2048

    # Traversal and absolute paths where a storage id goes: no RPC treats them as a path.
    for bad in ("../../outside", str(outside), str(root), "../" + storage_id, storage_id + "/../..", "/etc/passwd"):
        assert call_code(lambda: read(1, storage=bad)) == grpc.StatusCode.NOT_FOUND, bad
        assert (
            call_code(lambda: w.StatPath(worker_pb2.StatPathRequest(storage_id=bad), timeout=10))
            == grpc.StatusCode.NOT_FOUND
        ), bad
        assert (
            call_code(
                lambda: w.RemoveSectorFile(
                    worker_pb2.RemoveSectorFileRequest(sector=sid(1), type=ST.SECTOR_FILE_TYPE_SEALED, storage_id=bad),
                    timeout=10,
                )
            )
            == grpc.StatusCode.NOT_FOUND
        ), bad
        # IsAllocated reports a file it may not look at as absent (its contract: no error).
        absent = w.IsAllocated(
            worker_pb2.IsAllocatedRequest(
                sector=ref(1), range=common_pb2.UnpaddedByteRange(offset=0, size=127), storage_id=bad
            ),
            timeout=10,
        )
        assert not absent.file_present and not absent.allocated, bad
    # Unknown file types and combinations of types.
    for bad_type in (0, 3, 6, 8, 1 << 20, -1):
        assert call_code(lambda: read(1, t=bad_type)) == grpc.StatusCode.INVALID_ARGUMENT, bad_type
        assert (
            call_code(
                lambda: w.StatSectorFile(worker_pb2.StatSectorFileRequest(sector=sid(1), type=bad_type), timeout=10)
            )
            == grpc.StatusCode.INVALID_ARGUMENT
        )
        assert (
            call_code(
                lambda: w.RemoveSectorFile(worker_pb2.RemoveSectorFileRequest(sector=sid(1), type=bad_type), timeout=10)
            )
            == grpc.StatusCode.INVALID_ARGUMENT
        )

    # The planted symlink: not read, not stat'ed, and a remove does not touch its target.
    assert call_code(lambda: read(2)) == grpc.StatusCode.NOT_FOUND
    assert (
        call_code(
            lambda: w.StatSectorFile(
                worker_pb2.StatSectorFileRequest(sector=sid(2), type=ST.SECTOR_FILE_TYPE_SEALED), timeout=10
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        call_code(
            lambda: w.RemoveSectorFile(
                worker_pb2.RemoveSectorFileRequest(sector=sid(2), type=ST.SECTOR_FILE_TYPE_SEALED), timeout=10
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert secret.read_bytes() == b"top secret" * 300

    # The unsealed type folder linked out of the path: nothing in it is read, reported or
    # deleted (before the fix, RemoveSectorFile deleted the file outside the path).
    outside_unsealed = outside / "unsealed"
    outside_unsealed.mkdir()
    victim = outside_unsealed / name(3)
    victim.write_bytes(b"\3" * 2200)
    (root / "unsealed").rename(root / "unsealed.real")
    try:
        (root / "unsealed").symlink_to(outside_unsealed)
        assert call_code(lambda: read(3, t=ST.SECTOR_FILE_TYPE_UNSEALED)) == grpc.StatusCode.NOT_FOUND
        present = w.IsAllocated(
            worker_pb2.IsAllocatedRequest(sector=ref(3), range=common_pb2.UnpaddedByteRange(offset=0, size=127)),
            timeout=10,
        )
        assert not present.file_present and not present.allocated
        assert (
            call_code(
                lambda: w.ReadPiece(
                    worker_pb2.WorkerServiceReadPieceRequest(
                        sector=ref(3), range=common_pb2.UnpaddedByteRange(offset=0, size=127)
                    ),
                    timeout=10,
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        assert (
            call_code(
                lambda: w.RemoveSectorFile(
                    worker_pb2.RemoveSectorFileRequest(sector=sid(3), type=ST.SECTOR_FILE_TYPE_UNSEALED), timeout=10
                )
            )
            == grpc.StatusCode.NOT_FOUND
        )
        assert victim.read_bytes() == b"\3" * 2200
    finally:
        (root / "unsealed").unlink()
        (root / "unsealed.real").rename(root / "unsealed")
    # A real file is still removed (the refusals above are not a broken RemoveSectorFile).
    reply = w.RemoveSectorFile(
        worker_pb2.RemoveSectorFileRequest(sector=sid(1), type=ST.SECTOR_FILE_TYPE_SEALED, storage_id=storage_id),
        timeout=10,
    )
    assert [r.storage_id for r in reply.removed] == [storage_id] and not (root / "sealed" / name(1)).exists()
    (root / "sealed" / name(2)).unlink()
