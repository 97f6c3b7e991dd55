"""Shared pytest fixtures."""

from pathlib import Path

import pytest

# The known-answer vectors live beside the repository checkout, in ../shared/vectors.
VECTORS_DIR = Path(__file__).resolve().parents[2] / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not (VECTORS_DIR / "vectors.json").is_file():
        pytest.fail(
            f"known-answer vectors not found at {VECTORS_DIR}: "
            "check the repository out with ../shared beside it"
        )
    return VECTORS_DIR
