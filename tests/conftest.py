"""Fixtures shared by all tests (their code lives in tests/support; see tests/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.paths import VECTORS_DIR, filecoin_param_cache

# The worker's fault hooks (services/worker/faults.py) act only when this flag arms them; the
# service processes the tests start inherit it, and each test still sets the faults it wants.
os.environ["SECTORSTORAGE_TEST_FAULTS"] = "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    """The proofs library (rust_filecoin, when built) reads its parameter cache once per process,
    at its first use: point it at the tests' cache before any test can touch it, so no test's
    outcome depends on which filecoin test happened to run first in this process."""
    try:
        import rust_filecoin
    except ImportError:
        return
    cache = filecoin_param_cache()
    rust_filecoin.configure(cache, cache / "parents")


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The shared known-answer vectors (fr32, commP, commD, CIDs); fails if they are missing."""
    if not (VECTORS_DIR / "vectors.json").is_file():
        pytest.fail(
            f"known-answer vectors not found at {VECTORS_DIR}: check the repository out with ../shared beside it"
        )
    return VECTORS_DIR


# Real service processes (tests/support/fleet.py) and a PostgreSQL server for the tests that need
# one (session-scoped; tests/support/postgres.py).
from tests.support.fleet import start_service  # noqa: E402, F401
from tests.support.postgres import postgres  # noqa: E402, F401
