"""Paths: attach (and URL merge), detach, info, list, list sectors, health reports — behaviour
and errors, on SQLite and on PostgreSQL."""

from __future__ import annotations

import grpc
import pytest

from services.common.auth import Permission
from services.common.proto.sectorstorage.v1 import common_pb2 as cpb
from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from tests.support.index import (
    CACHE,
    SEALED,
    TIB,
    UNSEALED,
    Index,
    all_declarations,
    attach,
    declare,
    info,
    new_id,
    rpc_error,
    sector,
    stat,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def test_attach_new_path_records_stat_and_counts_as_heartbeat(clean: Index) -> None:
    stub = clean.stub()
    path = info(
        urls=["10.0.0.1:3456", "10.0.0.1:3456", "dns:///worker-2:3456"],
        weight=7,
        max_storage=5 * TIB,
        groups=["g1"],
        allow_to=["g2"],
        allow_types=[SEALED, CACHE],
        deny_miners=[1001],
    )
    resp = stub.StorageAttach(
        ipb.StorageAttachRequest(info=path, stat=stat(3 * TIB, capacity=4 * TIB, reserved=5)), timeout=10
    )
    assert resp.created
    assert list(resp.info.urls) == ["10.0.0.1:3456", "dns:///worker-2:3456"]  # deduplicated, in order
    got = stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=path.id), timeout=10)
    assert got.info == resp.info
    assert (got.stat.capacity, got.stat.available, got.stat.reserved) == (4 * TIB, 3 * TIB, 5)
    assert got.health.healthy and got.health.error == "" and got.health.last_heartbeat.seconds > 0
    assert list(got.info.allow_types) == [SEALED, CACHE] and list(got.info.deny_miners) == [1001]


def test_attach_uppercase_id_is_normalized(clean: Index) -> None:
    stub = clean.stub()
    raw = new_id().upper()
    resp = stub.StorageAttach(ipb.StorageAttachRequest(info=info(raw), stat=stat()), timeout=10)
    assert resp.info.id == raw.lower()
    assert stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=raw), timeout=10).info.id == raw.lower()


def test_reattach_merges_urls_overwrites_metadata_keeps_stat(clean: Index) -> None:
    stub = clean.stub()
    sid = new_id()
    stub.StorageAttach(
        ipb.StorageAttachRequest(info=info(sid, urls=["a:1", "b:2"], weight=10, groups=["old"]), stat=stat(TIB)),
        timeout=10,
    )
    again = stub.StorageAttach(
        ipb.StorageAttachRequest(
            info=info(sid, urls=["b:2", "c:3"], weight=3, can_seal=False, groups=["new"], deny_types=[UNSEALED]),
            stat=stat(1),  # ignored: not a new path
        ),
        timeout=10,
    )
    assert not again.created
    assert list(again.info.urls) == ["a:1", "b:2", "c:3"]
    got = stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=sid), timeout=10)
    assert got.info.weight == 3 and not got.info.can_seal and got.info.can_store
    assert list(got.info.groups) == ["new"] and list(got.info.deny_types) == [UNSEALED]
    assert got.stat.available == TIB


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        (info(""), "info.id is required"),
        (info("not-a-uuid"), "not a UUID"),
        (info(urls=[]), "at least one gRPC target"),
        (info(urls=["http://10.0.0.1:3456/remote"]), "HTTP URL"),
        (info(urls=["host"]), "not a gRPC target"),
        (info(urls=["host:99999"]), "not a gRPC target"),
        (info(urls=["ho st:1"]), "without spaces"),
        (info(allow_types=[SEALED], deny_types=[SEALED, CACHE]), "sealed is in both allow_types and deny_types"),
        (info(allow_types=[8]), "not a sector file type"),
        (info(weight=2**40), "weight"),
        (info(max_storage=2**63), "max_storage"),
        (info(groups=[""]), "group"),
        (info(allow_miners=[0]), "miner actor id"),
    ],
)
def test_attach_rejects_bad_info(clean: Index, path: cpb.StorageInfo, fragment: str) -> None:
    with rpc_error(INVALID, fragment):
        clean.stub().StorageAttach(ipb.StorageAttachRequest(info=path, stat=stat()), timeout=10)


def test_attach_rejects_missing_info_and_absurd_stat(clean: Index) -> None:
    stub = clean.stub()
    with rpc_error(INVALID, "info is required"):
        stub.StorageAttach(ipb.StorageAttachRequest(), timeout=10)
    with rpc_error(INVALID, "stat.available"):
        stub.StorageAttach(ipb.StorageAttachRequest(info=info(), stat=cpb.FsStat(available=2**64 - 1)), timeout=10)
    assert stub.StorageList(ipb.StorageListRequest(), timeout=10).paths == []


def test_detach_url_then_path(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub, urls=["a:1", "b:2"])
    declare(stub, sid, 1, [UNSEALED, SEALED])
    declare(stub, sid, 2, [CACHE])
    one = stub.StorageDetach(ipb.StorageDetachRequest(storage_id=sid, url="a:1"), timeout=10)
    assert not one.path_removed and one.dropped_declarations == 0
    assert list(stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=sid), timeout=10).info.urls) == ["b:2"]
    with rpc_error(NOT_FOUND, "not served from 'a:1'", "b:2"):
        stub.StorageDetach(ipb.StorageDetachRequest(storage_id=sid, url="a:1"), timeout=10)
    last = stub.StorageDetach(ipb.StorageDetachRequest(storage_id=sid, url="b:2"), timeout=10)
    assert last.path_removed and last.dropped_declarations == 3
    with rpc_error(NOT_FOUND, "not attached"):
        stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=sid), timeout=10)
    assert all_declarations(stub) == []


def test_detach_whole_path_and_errors(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub, urls=["a:1", "b:2"])
    declare(stub, sid, 5, [SEALED])
    gone = stub.StorageDetach(ipb.StorageDetachRequest(storage_id=sid), timeout=10)
    assert gone.path_removed and gone.dropped_declarations == 1
    with rpc_error(NOT_FOUND, "not attached"):
        stub.StorageDetach(ipb.StorageDetachRequest(storage_id=sid), timeout=10)
    with rpc_error(INVALID, "storage_id is required"):
        stub.StorageDetach(ipb.StorageDetachRequest(), timeout=10)
    with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "admin"):
        clean.stub(Permission.WRITE).StorageDetach(ipb.StorageDetachRequest(storage_id=sid), timeout=10)


def test_get_info_errors(clean: Index) -> None:
    stub = clean.stub(Permission.READ)
    with rpc_error(NOT_FOUND, "not attached"):
        stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=new_id()), timeout=10)
    with rpc_error(INVALID, "not a UUID"):
        stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id="abc"), timeout=10)


def test_list_sorted_by_capacity_with_file_counts(clean: Index) -> None:
    stub = clean.stub()
    small = attach(stub, available=TIB)
    big = attach(stub, available=3 * TIB)
    ids = sorted([new_id(), new_id()])
    for sid in ids:  # same capacity: ordered by id
        stub.StorageAttach(ipb.StorageAttachRequest(info=info(sid), stat=stat(2 * TIB)), timeout=10)
    declare(stub, big, 1, [SEALED, CACHE])
    declare(stub, big, 2, [SEALED])
    listed = stub.StorageList(ipb.StorageListRequest(), timeout=10).paths
    assert [p.info.id for p in listed] == [big, *ids, small]
    counts = {(c.type, c.count) for c in listed[0].file_counts}
    assert counts == {(SEALED, 2), (CACHE, 1)}
    assert list(listed[-1].file_counts) == [] and all(p.health.healthy for p in listed)


def test_list_sectors_pages_in_order_with_filters(clean: Index) -> None:
    stub = clean.stub()
    a, b = sorted([attach(stub), attach(stub)])
    for number in range(5):
        declare(stub, b, number, [UNSEALED, SEALED], primary=number % 2 == 0)
        declare(stub, a, number, [CACHE])
    declare(stub, a, 3, [SEALED], miner=999)
    expected = sorted(all_declarations(stub))
    assert len(expected) == 16
    pages = []
    token = ""
    while True:
        page = stub.StorageListSectors(ipb.StorageListSectorsRequest(page_size=3, page_token=token), timeout=10)
        pages.append(len(page.declarations))
        token = page.next_page_token
        pages_items = [(d.storage_id, d.sector.miner, d.sector.number, d.type, d.primary) for d in page.declarations]
        assert pages_items == sorted(pages_items)
        if not token:
            break
    assert pages == [3, 3, 3, 3, 3, 1]
    assert all_declarations(stub, page_size=3) == expected  # ordered by (storage id, miner, number, type)
    assert [d[0] for d in all_declarations(stub, b)] == [b] * 10
    one = stub.StorageListSectors(ipb.StorageListSectorsRequest(sector=sector(3)), timeout=10).declarations
    assert [(d.storage_id, d.type) for d in one] == [(a, CACHE), (b, UNSEALED), (b, SEALED)]
    exact = stub.StorageListSectors(ipb.StorageListSectorsRequest(page_size=16), timeout=10)
    assert len(exact.declarations) == 16 and exact.next_page_token == ""


def test_list_sectors_errors(clean: Index) -> None:
    stub = clean.stub()
    with rpc_error(INVALID, "page_token"):
        stub.StorageListSectors(ipb.StorageListSectorsRequest(page_token="garbage!"), timeout=10)
    with rpc_error(NOT_FOUND, "not attached"):
        stub.StorageListSectors(ipb.StorageListSectorsRequest(storage_id=new_id()), timeout=10)
    with rpc_error(INVALID, "sector.miner"):
        stub.StorageListSectors(ipb.StorageListSectorsRequest(sector=sector(1, miner=0)), timeout=10)


def test_report_health_records_stat_and_error(clean: Index) -> None:
    stub = clean.stub()
    sid = attach(stub)
    bad = stub.StorageReportHealth(
        ipb.StorageReportHealthRequest(
            storage_id=sid, report=cpb.HealthReport(stat=stat(5, capacity=10, used=2), error="statfs: EIO")
        ),
        timeout=10,
    )
    assert not bad.health.healthy and bad.health.error == "statfs: EIO"
    got = stub.StorageGetInfo(ipb.StorageGetInfoRequest(storage_id=sid), timeout=10)
    assert (got.stat.capacity, got.stat.available, got.stat.used) == (10, 5, 2) and not got.health.healthy
    good = stub.StorageReportHealth(
        ipb.StorageReportHealthRequest(storage_id=sid, report=cpb.HealthReport(stat=stat(7))), timeout=10
    )
    assert good.health.healthy and good.health.error == ""


def test_report_health_errors(clean: Index) -> None:
    stub = clean.stub()
    with rpc_error(NOT_FOUND, "StorageAttach it again"):
        stub.StorageReportHealth(
            ipb.StorageReportHealthRequest(storage_id=new_id(), report=cpb.HealthReport()), timeout=10
        )
    with rpc_error(INVALID, "report is required"):
        stub.StorageReportHealth(ipb.StorageReportHealthRequest(storage_id=new_id()), timeout=10)
    with rpc_error(grpc.StatusCode.PERMISSION_DENIED):
        clean.stub(Permission.READ).StorageReportHealth(ipb.StorageReportHealthRequest(storage_id=new_id()), timeout=10)
