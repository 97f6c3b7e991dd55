"""A PostgreSQL server for the tests: started once per session on loopback in a throwaway data
directory (as an unprivileged user when the tests run as root), or an external one named by
SECTORSTORAGE_TEST_POSTGRES_DSN (e.g. a CI service container). Tests that need it skip, saying
why, only when no PostgreSQL can be had at all."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count

import pytest

from services.common.db.pgserver import PostgresServer, PostgresUnavailable, find_bin_dir, start_postgres

EXTERNAL_DSN_ENV = "SECTORSTORAGE_TEST_POSTGRES_DSN"


@dataclass
class Postgres:
    """Hands out fresh databases: `new_database()` returns a DSN."""

    new_database: Callable[[], str]


def _external(dsn: str) -> Postgres:
    import psycopg

    serial = count(1)

    def new_database() -> str:
        name = f"sstest_{os.getpid()}_{next(serial)}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = dsn.rpartition("/")
        return f"{base}/{name}"

    return Postgres(new_database)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    external = os.environ.get(EXTERNAL_DSN_ENV)
    if external:
        yield _external(external)
        return
    if find_bin_dir() is None:
        pytest.skip(
            "PostgreSQL is not installed here (no initdb on PATH or in /usr/lib/postgresql/*/bin): "
            f"`apt-get install -y postgresql` (make test does it) or set {EXTERNAL_DSN_ENV}"
        )
    try:
        server: PostgresServer = start_postgres(fast=True)
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is installed but would not start: {exc}")
    try:
        yield Postgres(lambda: server.create_database("sstest"))
    finally:
        server.stop()
