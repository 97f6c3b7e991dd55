"""Index processes shared by the tests of one module, one per database backend. Tests keep to
their own paths and sectors, and `clean` detaches everything after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fleet import start_index
from tests.support.index import Index, reset
from tests.support.postgres import Postgres

BACKENDS = ["sqlite", "postgres"]


def database_url(backend: str, postgres_factory: Callable[[], Postgres]) -> str:
    """'' (SQLite in the data dir) or a fresh PostgreSQL database's DSN."""
    return "" if backend == "sqlite" else postgres_factory().new_database()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def index(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    url = database_url(backend, lambda: request.getfixturevalue("postgres"))
    server = start_index(tmp_path_factory.mktemp(f"index-{backend}"), url, backend)
    yield server
    server.close()
    server.proc.stop(timeout=15)


@pytest.fixture
def clean(index: Index) -> Iterator[Index]:
    yield index
    reset(index.stub())


@pytest.fixture
def make_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Index]]:
    """Starts extra index processes for one test (own config, restarts, several replicas)."""
    started: list[Index] = []

    def make(
        backend: str, env: dict[str, str] | None = None, db_url: str | None = None, data_dir: Path | None = None
    ) -> Index:
        url = db_url if db_url is not None else database_url(backend, lambda: request.getfixturevalue("postgres"))
        server = start_index(data_dir or tmp_path / f"index-{len(started)}", url, backend, env)
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()
        try:
            server.proc.stop(timeout=15)
        except Exception:  # noqa: BLE001
            server.proc.kill()
