"""Commitment CIDs at the manager's edge: clients may name a piece by CID or by commP, and a
worker's UnsealPiece wants CommD raw while the client passes the unsealed CID.

The encoding itself (CIDv1, fil-commitment-unsealed/sealed, base32) lives in rust_core, checked
against Filecoin's published vectors; this module only gives the manager one error type for it.
"""

from __future__ import annotations

import rust_core


class CidError(ValueError):
    """Not a commitment CID of the expected kind."""


def unsealed_cid(comm: bytes) -> str:
    """commP or commD as a piece CID (`baga6ea4seaq...`)."""
    try:
        return rust_core.piece_cid(comm)
    except ValueError as exc:
        raise CidError(str(exc)) from None


def sealed_cid(comm_r: bytes) -> str:
    """commR as a sealed CID (`bagboea4b5abc...`)."""
    try:
        return rust_core.sealed_cid(comm_r)
    except ValueError as exc:
        raise CidError(str(exc)) from None


def parse_unsealed_cid(text: str) -> bytes:
    try:
        return rust_core.commp_from_cid(text)
    except ValueError as exc:
        raise CidError(str(exc)) from None


def parse_sealed_cid(text: str) -> bytes:
    try:
        return rust_core.commr_from_cid(text)
    except ValueError as exc:
        raise CidError(str(exc)) from None
