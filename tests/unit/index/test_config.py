"""The index's config keys: defaults as the reference, validation naming the key."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError, load_config
from services.index.config import IndexConfig


def test_defaults_match_the_reference() -> None:
    config = load_config(IndexConfig, env={})
    assert config.index.heartbeat_timeout_s == 50.0  # 5 missed 10 s heartbeats
    assert (config.index.lock_ttl_min_s, config.index.lock_ttl_default_s, config.index.lock_ttl_max_s) == (
        5.0,
        60.0,
        600.0,
    )
    assert config.database.url == ""


def test_environment_sets_index_keys() -> None:
    config = load_config(
        IndexConfig, env={"SECTORSTORAGE_INDEX_HEARTBEAT_TIMEOUT_S": "2.5", "SECTORSTORAGE_INDEX_DB_THREADS": "8"}
    )
    assert config.index.heartbeat_timeout_s == 2.5 and config.index.db_threads == 8


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SECTORSTORAGE_INDEX_HEARTBEAT_TIMEOUT_S": "0"}, "index.heartbeat_timeout_s"),
        ({"SECTORSTORAGE_INDEX_LOCK_TTL_MIN_S": "100"}, "lock_ttl_min_s <= lock_ttl_default_s"),
        ({"SECTORSTORAGE_INDEX_NOPE": "1"}, None),
        ({"SECTORSTORAGE_DATABASE_URL": "mysql://x"}, "database.url"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], fragment: str | None) -> None:
    if fragment is None:  # unknown environment names are not config keys: ignored
        load_config(IndexConfig, env=env)
        return
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(IndexConfig, env=env)
