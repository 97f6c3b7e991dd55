"""The pure-Python commitment CIDs (services/common/cid.py, what sectorctl uses) equal
rust_core's bit for bit, and bad CIDs are refused with what is wrong."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rust_core
from services.common import cid


@given(st.binary(min_size=32, max_size=32))
def test_same_cids_as_rust_core(commitment: bytes) -> None:
    assert cid.unsealed_cid(commitment) == rust_core.piece_cid(commitment)
    assert cid.sealed_cid(commitment) == rust_core.sealed_cid(commitment)
    assert cid.commitment_of_unsealed_cid(rust_core.piece_cid(commitment)) == commitment
    assert cid.commitment_of_sealed_cid(rust_core.sealed_cid(commitment)) == commitment


def test_bad_cids_are_refused() -> None:
    comm = os.urandom(32)
    with pytest.raises(cid.CidError, match="not a sealed"):
        cid.commitment_of_sealed_cid(cid.unsealed_cid(comm))
    with pytest.raises(cid.CidError, match="base32"):
        cid.commitment_of_sealed_cid("zdj7W")
    with pytest.raises(cid.CidError):
        cid.commitment_of_sealed_cid(cid.sealed_cid(comm)[:-4])
    with pytest.raises(cid.CidError, match="32 bytes"):
        cid.sealed_cid(b"short")
