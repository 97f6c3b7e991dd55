"""Sizes as operators type them: binary units (KiB, MiB, a bare K/M) and SI units (KB, MB),
never confused: `--size 8MB` is 8,000,000 bytes and so no sector size, said with a hint."""

from __future__ import annotations

import pytest

from services.cli.names import parse_size, seal_proof
from services.common.proto.sectorstorage.v1 import common_pb2


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2KiB", 2048),
        ("8MiB", 8 << 20),
        ("8M", 8 << 20),
        ("8 MiB", 8 << 20),
        ("1.5GiB", 3 << 29),
        ("4096", 4096),
        ("4096B", 4096),
        ("8MB", 8_000_000),
        ("1GB", 10**9),
        ("2kb", 2000),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "8XB", "8MiBB", "8KBB", "-1", "8 M i B"])
def test_unparsable_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="can't parse size"):
        parse_size(text)


def test_sector_sizes_are_binary_and_si_is_refused_with_a_hint() -> None:
    assert seal_proof("8MiB") == common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1
    assert seal_proof("2KiB") == common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1
    with pytest.raises(ValueError, match=r"8,000,000 bytes in SI units; sector sizes are binary: 8MiB\?"):
        seal_proof("8MB")
    with pytest.raises(ValueError, match="use one of 2KiB"):
        seal_proof("3MiB")
