"""Fixtures shared by all tests."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from services.devfleet import ServiceProcess

REPO = Path(__file__).resolve().parent.parent
# The known-answer vectors live beside the repository checkout, in ../shared/vectors.
VECTORS_DIR = REPO.parent / "shared" / "vectors"
# The fleet key every test service shares (tests sign their own tokens with it).
TEST_SECRET = "test-fleet-key-0123456789abcdef-0123456789abcdef"

# The worker's fault hooks (services/worker/faults.py) act only when this flag arms them; the
# service processes the tests start inherit it, and each test still sets the faults it wants.
os.environ["SECTORSTORAGE_TEST_FAULTS"] = "1"


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[object]:
    """Starts real service processes; all are stopped (killed if need be) at teardown."""
    started: list[ServiceProcess] = []

    def start(
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> ServiceProcess:
        proc = ServiceProcess(
            name=name,
            data_dir=data_dir or tmp_path / f"{name}-{len(started)}",
            args=args,
            env=env or {},
            secret=TEST_SECRET,
            wrapper=wrapper,
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        try:
            proc.stop(timeout=10)
        except Exception:
            proc.kill()


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The shared known-answer vectors (fr32, commP, commD, CIDs); fails if they are missing."""
    if not (VECTORS_DIR / "vectors.json").is_file():
        pytest.fail(
            f"known-answer vectors not found at {VECTORS_DIR}: check the repository out with ../shared beside it"
        )
    return VECTORS_DIR


# A PostgreSQL server for the tests that need one (session-scoped; see tests/postgres.py).
from tests.postgres import postgres  # noqa: E402, F401
