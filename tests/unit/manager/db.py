"""The manager's database for store tests: a SQLite file or a PostgreSQL database (the
`postgres` fixture's throwaway server), migrated, closed after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.db import Database, open_database
from services.manager.store import ManagerStore
from services.manager.worker_link import CODEC


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'manager.db'}"
    return str(request.getfixturevalue("postgres").new_database())


@pytest.fixture
def databases() -> Iterator[list[Database]]:
    opened: list[Database] = []
    yield opened
    for db in opened:
        db.close()


def open_store(db_url: str, databases: list[Database], session_name: str | None = None) -> ManagerStore:
    db = open_database(db_url, Path("/nonexistent"), "manager", session_name=session_name)
    databases.append(db)
    store = ManagerStore(db, CODEC)
    store.migrate()
    return store
