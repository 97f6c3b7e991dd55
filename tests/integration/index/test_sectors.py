"""Sector files: declare, drop, redeclare, find (weights, fetch candidates) and best alloc
(overheads, filters, order) — behaviour and errors, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from services.common.auth import Permission
from services.common.proto.sectorstorage.v1 import common_pb2 as cpb
from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from tests.support.index import (
    CACHE,
    GIB,
    KIB2,
    SEALED,
    SEALING,
    STORAGE,
    TIB,
    UNSEALED,
    Index,
    all_declarations,
    attach,
    declare,
    find,
    new_id,
    rpc_error,
    sector,
    stat,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
# Sealing space for sealed+cache of a 2 KiB sector: 2048 + 141 * 2048 // 10.
SEAL_SEALED_CACHE_2K = 2048 + 28876


def decls(index: Index, storage_id: str) -> set[tuple[int, int, bool]]:
    return {(n, t, p) for _, _, n, t, p in all_declarations(index.stub(), storage_id)}


# -- declare / drop -------------------------------------------------------------------------------


def test_declare_is_idempotent_and_primary_only_upgrades(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    declare(stub, sid, 1, [UNSEALED, SEALED, SEALED])
    declare(stub, sid, 1, [UNSEALED])
    assert decls(clean, sid) == {(1, UNSEALED, False), (1, SEALED, False)}
    declare(stub, sid, 1, [SEALED], primary=True)
    assert decls(clean, sid) == {(1, UNSEALED, False), (1, SEALED, True)}
    declare(stub, sid, 1, [SEALED], primary=False)  # never downgrades
    assert decls(clean, sid) == {(1, UNSEALED, False), (1, SEALED, True)}


def test_declare_errors(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    with rpc_error(NOT_FOUND, "not attached"):
        declare(stub, new_id(), 1, [SEALED])
    with rpc_error(INVALID, "types is empty"):
        declare(stub, sid, 1, [])
    with rpc_error(INVALID, "not a sector file type"):
        declare(stub, sid, 1, [SEALED, 16])
    with rpc_error(INVALID, "not a sector file type"):
        declare(stub, sid, 1, [0])
    with rpc_error(INVALID, "sector.miner"):
        declare(stub, sid, 1, [SEALED], miner=0)
    with rpc_error(INVALID, "sector.number", "MaxSectorNumber"):
        declare(stub, sid, 2**63, [SEALED])
    with rpc_error(INVALID, "sector is required"):
        stub.StorageDeclareSector(ipb.StorageDeclareSectorRequest(storage_id=sid, types=[SEALED]), timeout=10)
    with rpc_error(INVALID, "not a UUID"):
        declare(stub, "xyz", 1, [SEALED])
    with rpc_error(grpc.StatusCode.PERMISSION_DENIED):
        declare(clean.stub(Permission.READ), sid, 1, [SEALED])
    assert decls(clean, sid) == set()  # nothing half-written
    declare(stub, sid, 2**63 - 1, [SEALED], miner=2**63 - 1)  # the largest valid ids
    assert decls(clean, sid) == {(2**63 - 1, SEALED, False)}


def test_drop_is_idempotent(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    declare(stub, sid, 1, [UNSEALED, SEALED, CACHE])
    stub.StorageDropSector(
        ipb.StorageDropSectorRequest(storage_id=sid, sector=sector(1), types=[UNSEALED, CACHE]), timeout=10
    )
    stub.StorageDropSector(
        ipb.StorageDropSectorRequest(storage_id=sid, sector=sector(1), types=[UNSEALED, CACHE]), timeout=10
    )
    assert decls(clean, sid) == {(1, SEALED, False)}
    # Not declared there, or an unknown path: nothing to forget, not an error.
    stub.StorageDropSector(ipb.StorageDropSectorRequest(storage_id=sid, sector=sector(9), types=[SEALED]), timeout=10)
    stub.StorageDropSector(
        ipb.StorageDropSectorRequest(storage_id=new_id(), sector=sector(1), types=[SEALED]), timeout=10
    )
    with rpc_error(INVALID, "types is empty"):
        stub.StorageDropSector(ipb.StorageDropSectorRequest(storage_id=sid, sector=sector(1)), timeout=10)
    with rpc_error(INVALID, "sector is required"):
        stub.StorageDropSector(ipb.StorageDropSectorRequest(storage_id=sid, types=[SEALED]), timeout=10)


# -- redeclare ------------------------------------------------------------------------------------


def redeclare_stream(
    storage_id: str, batches: list[list[tuple[int, int, bool]]], drop_missing: bool = False, last: bool = True
) -> Iterator[ipb.StorageRedeclareRequest]:
    """Header, the batches, the final one marked last (an empty final batch when there are none)."""
    yield ipb.StorageRedeclareRequest(
        header=ipb.StorageRedeclareHeader(storage_id=storage_id, drop_missing=drop_missing)
    )
    for i, batch in enumerate(batches or [[]]):
        yield ipb.StorageRedeclareRequest(
            batch=ipb.StorageRedeclareBatch(
                declarations=[ipb.SectorDeclaration(sector=sector(n), type=t, primary=p) for n, t, p in batch],
                last=last and i == max(len(batches) - 1, 0),
            )
        )


def test_redeclare_adds_upgrades_and_drops_missing(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    other = attach(stub)
    declare(stub, sid, 1, [SEALED])
    declare(stub, sid, 2, [CACHE], primary=True)
    declare(stub, sid, 3, [UNSEALED])
    declare(stub, other, 3, [UNSEALED])
    result = stub.StorageRedeclare(
        redeclare_stream(
            sid, [[(1, SEALED, True), (2, CACHE, False)], [(4, SEALED, False), (4, SEALED, True)]], drop_missing=True
        ),
        timeout=30,
    )
    assert (result.declared, result.unchanged, result.dropped) == (2, 1, 1)
    assert decls(clean, sid) == {(1, SEALED, True), (2, CACHE, True), (4, SEALED, True)}
    assert decls(clean, other) == {(3, UNSEALED, False)}  # other paths untouched
    keep = stub.StorageRedeclare(redeclare_stream(sid, [[(5, UNSEALED, False)]]), timeout=30)
    assert (keep.declared, keep.unchanged, keep.dropped) == (1, 0, 0)
    assert len(decls(clean, sid)) == 4


def test_redeclare_large_batches(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    batches = [[(n, t, n % 3 == 0) for n in range(b * 5000, (b + 1) * 5000) for t in (SEALED, CACHE)] for b in range(3)]
    result = stub.StorageRedeclare(redeclare_stream(sid, batches, drop_missing=True), timeout=120)
    assert (result.declared, result.unchanged, result.dropped) == (30_000, 0, 0)
    again = stub.StorageRedeclare(redeclare_stream(sid, batches[:1], drop_missing=True), timeout=120)
    assert (again.declared, again.unchanged, again.dropped) == (0, 10_000, 20_000)


def test_redeclare_errors_change_nothing(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    declare(stub, sid, 1, [SEALED])
    before = decls(clean, sid)
    with rpc_error(NOT_FOUND, "not attached"):
        stub.StorageRedeclare(redeclare_stream(new_id(), [[(1, SEALED, False)]]), timeout=10)
    with rpc_error(INVALID, "first StorageRedeclare message must be a header"):
        stub.StorageRedeclare(iter([ipb.StorageRedeclareRequest(batch=ipb.StorageRedeclareBatch())]), timeout=10)
    with rpc_error(INVALID, "empty StorageRedeclare stream"):
        stub.StorageRedeclare(iter([]), timeout=10)
    twice = [
        *redeclare_stream(sid, [[(7, SEALED, False)]], drop_missing=True),
        ipb.StorageRedeclareRequest(header=ipb.StorageRedeclareHeader(storage_id=sid)),
    ]
    with rpc_error(INVALID, "only the first"):
        stub.StorageRedeclare(iter(twice), timeout=10)
    with rpc_error(INVALID, "declarations[1].type"):
        stub.StorageRedeclare(
            redeclare_stream(sid, [[(8, SEALED, False), (9, 0, False)]], drop_missing=True), timeout=10
        )
    foreign = ipb.StorageRedeclareRequest(
        batch=ipb.StorageRedeclareBatch(
            declarations=[ipb.SectorDeclaration(storage_id=new_id(), sector=sector(1), type=SEALED)]
        )
    )
    with rpc_error(INVALID, "differs from the header"):
        stub.StorageRedeclare(iter([*redeclare_stream(sid, [], drop_missing=True, last=False), foreign]), timeout=10)
    with rpc_error(INVALID, "ended without a batch with last = true", "nothing was changed"):
        stub.StorageRedeclare(
            redeclare_stream(sid, [[(7, SEALED, False)], [(8, SEALED, False)]], drop_missing=True, last=False),
            timeout=10,
        )
    with rpc_error(INVALID, "came after the batch with last = true"):
        stub.StorageRedeclare(
            iter([*redeclare_stream(sid, [[(7, SEALED, False)]], drop_missing=True), foreign]), timeout=10
        )
    assert decls(clean, sid) == before


def test_redeclare_cancelled_stream_changes_nothing(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    declare(stub, sid, 1, [SEALED])

    def broken() -> Iterator[ipb.StorageRedeclareRequest]:
        yield from redeclare_stream(sid, [[(2, SEALED, False)]], drop_missing=True, last=False)
        raise RuntimeError("client failed mid-stream")

    for _ in range(5):  # the server may see the cancellation as an early end of stream: never applied
        with pytest.raises(grpc.RpcError):
            stub.StorageRedeclare(broken(), timeout=10)
    assert decls(clean, sid) == {(1, SEALED, False)}


# -- find -----------------------------------------------------------------------------------------


def test_find_weights_by_types_found_and_orders(clean: Index) -> None:
    stub = clean.stub()
    heavy = attach(stub, weight=10, urls=["h:1", "h2:1"])
    light = attach(stub, weight=15)
    tie_a, tie_b = sorted([attach(stub, weight=5), attach(stub, weight=5)])
    declare(stub, heavy, 1, [SEALED, CACHE])
    declare(stub, heavy, 1, [UNSEALED], primary=True)
    declare(stub, light, 1, [SEALED])
    declare(stub, tie_b, 1, [CACHE])
    declare(stub, tie_a, 1, [CACHE])
    declare(stub, light, 2, [SEALED, CACHE])  # another sector
    found = find(stub, 1, [SEALED, CACHE])
    assert [(f.id, f.weight) for f in found] == [(heavy, 20), (light, 15), (tie_a, 5), (tie_b, 5)]
    top = found[0]
    assert list(top.urls) == ["h:1", "h2:1"] and list(top.types) == [SEALED, CACHE]
    assert top.primary is False  # the primary unsealed copy was not asked for
    assert all(f.healthy and not f.fetch_candidate for f in found)
    assert find(stub, 1, [UNSEALED])[0].primary
    assert find(stub, 3, [SEALED]) == []  # nobody holds it: empty, not an error
    assert find(stub, 1, [SEALED], miner=1001) == []


def test_find_fetch_candidates(clean: Index) -> None:
    stub = clean.stub()
    holder = attach(stub, allow_to=["pc2"])
    fits = attach(stub, groups=["pc2"], available=TIB)
    fits_smaller = attach(stub, groups=["pc2", "x"], available=GIB)
    attach(stub, groups=["other"])  # not in the holder's allow_to
    attach(stub, groups=["pc2"], can_seal=False)  # cannot seal
    attach(stub, groups=["pc2"], weight=0)  # read-only
    attach(stub, groups=["pc2"], available=SEAL_SEALED_CACHE_2K - 1)  # too small
    attach(stub, groups=["pc2"], deny_types=[CACHE])  # may not take cache
    attach(stub, groups=["pc2"], allow_miners=[7])  # other miners only
    sick = attach(stub, groups=["pc2"])
    stub.StorageReportHealth(
        ipb.StorageReportHealthRequest(storage_id=sick, report=cpb.HealthReport(stat=stat(), error="EIO")), timeout=10
    )
    declare(stub, holder, 1, [SEALED, CACHE])
    without = find(stub, 1, [SEALED, CACHE])
    assert [f.id for f in without] == [holder]
    found = find(stub, 1, [SEALED, CACHE], allow_fetch=True)
    assert [f.id for f in found] == [holder, fits, fits_smaller]
    assert [(f.fetch_candidate, f.weight, list(f.types)) for f in found[1:]] == [(True, 0, []), (True, 0, [])]
    assert find(stub, 2, [SEALED], allow_fetch=True) == []  # no holder: nothing to fetch


def test_find_holder_without_allow_to_allows_any_group(clean: Index) -> None:
    stub = clean.stub()
    limited = attach(stub, allow_to=["a"])
    anywhere = attach(stub)
    target = attach(stub, groups=["b"])
    declare(stub, limited, 1, [SEALED])
    declare(stub, anywhere, 1, [SEALED])
    assert [f.id for f in find(stub, 1, [SEALED], allow_fetch=True) if f.fetch_candidate] == [target]
    stub.StorageDropSector(
        ipb.StorageDropSectorRequest(storage_id=anywhere, sector=sector(1), types=[SEALED]), timeout=10
    )
    assert [f.id for f in find(stub, 1, [SEALED], allow_fetch=True) if f.fetch_candidate] == []


def test_find_lists_unhealthy_holders_flagged(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    declare(stub, sid, 1, [SEALED])
    stub.StorageReportHealth(
        ipb.StorageReportHealthRequest(storage_id=sid, report=cpb.HealthReport(stat=stat(), error="EIO")), timeout=10
    )
    [loc] = find(stub, 1, [SEALED])
    assert loc.id == sid and not loc.healthy


def test_find_errors(clean: Index) -> None:
    stub = clean.stub(Permission.READ)
    with rpc_error(INVALID, "types is empty"):
        find(stub, 1, [])
    with rpc_error(INVALID, "sector_size 4096 is not a supported sector size", "34359738368"):
        find(stub, 1, [SEALED], allow_fetch=True, sector_size=4096)
    assert find(stub, 1, [SEALED], sector_size=4096) == []  # size only matters with allow_fetch
    with rpc_error(INVALID, "sector is required"):
        stub.StorageFindSector(ipb.StorageFindSectorRequest(types=[SEALED]), timeout=10)


# -- best alloc -----------------------------------------------------------------------------------


def best(
    index: Index, types: list[int], path_type: int, size: int = KIB2, **kw: object
) -> ipb.StorageBestAllocResponse:
    return index.stub(Permission.READ).StorageBestAlloc(
        ipb.StorageBestAllocRequest(types=types, sector_size=size, path_type=path_type, include_rejected=True, **kw),
        timeout=10,  # type: ignore[arg-type]
    )


def test_best_alloc_orders_by_available_times_weight(clean: Index) -> None:
    stub = clean.stub()
    a = attach(stub, weight=10, available=100 * GIB)  # 1000
    b = attach(stub, weight=1, available=900 * GIB)  # 900
    c = attach(stub, weight=30, available=50 * GIB)  # 1500
    d1, d2 = sorted(
        [attach(stub, weight=2, available=100 * GIB), attach(stub, weight=4, available=50 * GIB)]
    )  # 200 each
    got = best(clean, [SEALED, CACHE], SEALING)
    assert [p.id for p in got.paths] == [c, a, b, d1, d2]
    assert list(got.rejected) == []


def test_best_alloc_rejects_with_reasons(clean: Index) -> None:
    stub = clean.stub()
    ok = attach(stub)
    store_only = attach(stub, can_seal=False)
    read_only = attach(stub, weight=0)
    small = attach(stub, available=SEAL_SEALED_CACHE_2K - 1)
    exact = attach(stub, available=SEAL_SEALED_CACHE_2K)
    no_cache = attach(stub, deny_types=[CACHE])
    sealed_only = attach(stub, allow_types=[SEALED])
    other_miner = attach(stub, allow_miners=[1001])
    denied_miner = attach(stub, deny_miners=[1000])
    sick = attach(stub)
    stub.StorageReportHealth(
        ipb.StorageReportHealthRequest(storage_id=sick, report=cpb.HealthReport(stat=stat(), error="EIO")), timeout=10
    )
    got = best(clean, [SEALED, CACHE], SEALING, miner=1000)
    assert [p.id for p in got.paths] == [ok, exact]
    reasons = {r.storage_id: r.reason for r in got.rejected}
    assert reasons == {
        store_only: "not can_seal",
        read_only: "weight 0 (read-only)",
        small: f"needs {SEAL_SEALED_CACHE_2K} bytes, {SEAL_SEALED_CACHE_2K - 1} available",
        no_cache: "cache denied by deny_types",
        sealed_only: "cache not in allow_types (sealed)",
        other_miner: "miner 1000 not in allow_miners",
        denied_miner: "miner 1000 denied by deny_miners",
        sick: "unhealthy: last report has an error: EIO",
    }
    # Without a miner the miner filters do not apply; without include_rejected no reasons.
    plain = clean.stub().StorageBestAlloc(
        ipb.StorageBestAllocRequest(types=[SEALED], sector_size=KIB2, path_type=SEALING), timeout=10
    )
    assert set(p.id for p in plain.paths) == {ok, exact, small, no_cache, sealed_only, other_miner, denied_miner}
    assert list(plain.rejected) == []


def test_best_alloc_storage_uses_finalized_overheads(clean: Index) -> None:
    stub = clean.stub()
    size = 32 * GIB
    need = size + size * 2 // 10  # sealed 1x + cache 0.2x
    fits = attach(stub, can_seal=False, available=need)
    short = attach(stub, can_seal=False, available=need - 1)
    seal_only = attach(stub, can_store=False, available=TIB)
    got = best(clean, [SEALED, CACHE], STORAGE, size=size)
    assert [p.id for p in got.paths] == [fits]
    assert {r.storage_id for r in got.rejected} == {short, seal_only}
    sealing = best(clean, [SEALED, CACHE], SEALING, size=size)  # 15.1x of 32 GiB = 483 GiB fits in 1 TiB
    assert [p.id for p in sealing.paths] == [seal_only]


def test_best_alloc_storage_ids_filter(clean: Index) -> None:
    stub = clean.stub()
    a = attach(stub, available=2 * TIB)
    b = attach(stub, available=TIB)
    attach(stub, available=3 * TIB)
    missing = new_id()
    got = best(clean, [SEALED], SEALING, storage_ids=[b, a, missing])
    assert [p.id for p in got.paths] == [a, b]
    assert [(r.storage_id, r.reason) for r in got.rejected] == [(missing, "not attached")]


def test_best_alloc_errors(clean: Index) -> None:
    with rpc_error(INVALID, "types is empty"):
        best(clean, [], SEALING)
    with rpc_error(INVALID, "not a supported sector size"):
        best(clean, [SEALED], SEALING, size=1000)
    with rpc_error(INVALID, "path_type must be SEALING or STORAGE"):
        best(clean, [SEALED], cpb.PATH_TYPE_UNSPECIFIED)
    with rpc_error(INVALID, "miner must be"):
        best(clean, [SEALED], SEALING, miner=0)
    with rpc_error(INVALID, "storage_ids"):
        best(clean, [SEALED], SEALING, storage_ids=["nope"])
    assert list(best(clean, [SEALED], SEALING).paths) == []  # no paths: empty, not an error
