"""The index's pure rules: space overheads, filters, ranking, validation, the lock matrix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.index.domain import (
    FileType,
    InvalidArgument,
    LockRequest,
    PathInfo,
    PathType,
    SectorId,
    check_url,
    conflicts,
)
from services.index.policy import (
    alloc_rank,
    check_sector_size,
    fetch_groups,
    group_problem,
    health_problem,
    miner_problem,
    space_needed,
    type_problem,
)
from services.index.store import decode_page_token, encode_page_token

U, S, C = FileType.UNSEALED, FileType.SEALED, FileType.CACHE
GIB32 = 32 << 30


def test_space_needed_uses_the_reference_overheads() -> None:
    assert space_needed(S | C, GIB32, PathType.SEALING) == GIB32 + 141 * GIB32 // 10  # 15.1x
    assert space_needed(U | S | C, GIB32, PathType.STORAGE) == 2 * GIB32 + 2 * GIB32 // 10
    assert space_needed(C, 2048, PathType.SEALING) == 28876  # integer division as in the reference
    assert space_needed(FileType(0), 2048, PathType.SEALING) == 0


def test_sector_sizes() -> None:
    for size in (2048, 8 << 20, 512 << 20, 32 << 30, 64 << 30):
        assert check_sector_size(size) == size
    with pytest.raises(InvalidArgument, match="68719476736"):
        check_sector_size(4096)


def test_health() -> None:
    assert health_problem(100.0, "", now=149.0, timeout=50) is None
    assert health_problem(100.0, "", now=151.0, timeout=50) == "unhealthy: last heartbeat 51s ago (timeout 50s)"
    assert health_problem(100.0, "EIO", now=100.0, timeout=50) == "unhealthy: last report has an error: EIO"


def test_filters() -> None:
    path = PathInfo("x", ("a:1",), allow_types=S | C, deny_types=FileType(0), allow_miners=(1, 2), deny_miners=(2,))
    assert type_problem(path, S | C) is None
    assert type_problem(path, U | S) == "unsealed not in allow_types (sealed|cache)"
    assert type_problem(PathInfo("x", ("a:1",), deny_types=C), S | C) == "cache denied by deny_types"
    assert miner_problem(path, None) is None and miner_problem(path, 1) is None
    assert miner_problem(path, 3) == "miner 3 not in allow_miners"
    assert miner_problem(path, 2) == "miner 2 denied by deny_miners"


def test_fetch_groups() -> None:
    assert fetch_groups([("a",), ("b", "c")]) == frozenset({"a", "b", "c"})
    assert fetch_groups([("a",), ()]) is None  # a holder without allow_to: anywhere
    assert group_problem(None, ()) is None
    assert group_problem(frozenset({"a"}), ("b", "a")) is None
    assert group_problem(frozenset({"a"}), ("b",)) is not None


def test_alloc_rank_orders_by_available_times_weight_then_id() -> None:
    ranked = sorted([("b", 10, 100), ("a", 20, 50), ("c", 1, 2000)], key=lambda p: alloc_rank(p[1], p[2], p[0]))
    assert [p[0] for p in ranked] == ["c", "a", "b"]


def test_urls() -> None:
    for good in ("10.0.0.1:3456", "[::1]:3456", "worker-3.local:1", "dns:///worker:3456", "unix:/run/w.sock"):
        assert check_url(good) == good
    for bad in ("", "http://h:1/remote", "h", "h:0", "h:70000", "dns:", " h:1"):
        with pytest.raises(InvalidArgument):
            check_url(bad)


def test_lock_request_normalization() -> None:
    req = LockRequest(SectorId(1, 1), read_types=S | C, write_types=S, owner="o").checked()
    assert req.read_types == C and req.write_types == S
    with pytest.raises(InvalidArgument, match="both empty"):
        LockRequest(SectorId(1, 1), FileType(0), FileType(0), "o").checked()


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    from services.index.domain import Declaration

    token = encode_page_token(Declaration("id", SectorId(5, 6), S))
    assert decode_page_token(token) == ("id", 5, 6, 2)
    for bad in ("", "!!!", "e30", encode_page_token.__name__):
        with pytest.raises(InvalidArgument):
            decode_page_token(bad)


masks = st.integers(min_value=0, max_value=7)


@given(held_read=masks, held_write=masks, want_read=masks, want_write=masks)
def test_conflicts_is_the_per_type_reader_writer_rule(
    held_read: int, held_write: int, want_read: int, want_write: int
) -> None:
    """Per type: a writer excludes everyone, readers exclude writers; types are independent."""
    expected = False
    for t in (1, 2, 4):
        readers, writer = bool(held_read & t), bool(held_write & t)
        if want_write & t and (readers or writer):
            expected = True
        if want_read & t and writer:
            expected = True
    assert conflicts(held_read, held_write, want_read, want_write) == expected
