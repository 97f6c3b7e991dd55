"""Where the repository and the shared known-answer vectors are, for tests that read files."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
# The known-answer vectors live beside the repository checkout, in ../shared/vectors.
VECTORS_DIR = REPO.parent / "shared" / "vectors"


def filecoin_param_cache() -> Path:
    """The tests' Groth16 parameter cache for rust_filecoin (random parameters, NOT the network's):
    $SECTORSTORAGE_FIL_PARAMS, else ~/.cache/sectorstorage/filecoin-params (SDR parents in its
    `parents/`)."""
    env = os.environ.get("SECTORSTORAGE_FIL_PARAMS")
    return Path(env) if env else Path.home() / ".cache" / "sectorstorage" / "filecoin-params"
