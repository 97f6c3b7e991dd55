"""Config layering and validation: defaults < TOML < environment < flags; bad values name the key."""

from pathlib import Path

import pytest

from services.common.config import ConfigError, load_config, parse_host_port
from services.worker.config import WorkerConfig


def test_defaults() -> None:
    config = load_config(WorkerConfig, env={})
    assert config.listen == "127.0.0.1:0"
    assert config.auth.required is True
    assert config.worker.manager == ""


def test_layering_file_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "worker.toml"
    toml.write_text('listen = "127.0.0.1:1000"\n[worker]\nmanager = "m:1"\nindex = "i:1"\n[log]\nlevel = "debug"\n')
    env = {"SECTORSTORAGE_WORKER_MANAGER": "m:2", "SECTORSTORAGE_LOG_LEVEL": "warning"}
    config = load_config(WorkerConfig, toml, flags={"listen": "127.0.0.1:3000", "data_dir": None}, env=env)
    assert config.listen == "127.0.0.1:3000"  # flag beats file
    assert config.worker.manager == "m:2"  # env beats file
    assert config.worker.index == "i:1"  # file beats default
    assert config.log.level == "warning"


def test_env_values_are_typed() -> None:
    env = {"SECTORSTORAGE_AUTH_REQUIRED": "false", "SECTORSTORAGE_SHUTDOWN_GRACE": "2.5"}
    config = load_config(WorkerConfig, env=env)
    assert config.auth.required is False
    assert config.shutdown_grace == 2.5


def test_bad_env_value_names_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(WorkerConfig, env={"SECTORSTORAGE_WORKER_HEARTBEAT_INTERVAL_S": "-1"})
    message = str(err.value)
    assert "worker.heartbeat_interval_s" in message
    assert "SECTORSTORAGE_WORKER_HEARTBEAT_INTERVAL_S" in message
    assert "environment" in message


def test_bad_listen_and_unknown_key_in_file(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('listen = "nohostport"\ncolour = "blue"\n')
    with pytest.raises(ConfigError) as err:
        load_config(WorkerConfig, toml, env={})
    message = str(err.value)
    assert "config key 'listen'" in message and "HOST:PORT" in message
    assert "unknown config key 'colour'" in message


def test_short_secret_rejected() -> None:
    with pytest.raises(ConfigError, match="auth.secret"):
        load_config(WorkerConfig, env={"SECTORSTORAGE_AUTH_SECRET": "short"})


def test_missing_and_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(WorkerConfig, tmp_path / "nope.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("listen = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(WorkerConfig, broken, env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:8080", ("::1", 8080)), ("host:65535", ("host", 65535))],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["", "host", ":80", "host:x", "host:70000"])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)


def test_manager_assigner_from_env_and_validated() -> None:
    from services.manager.config import ManagerConfig

    assert load_config(ManagerConfig, env={}).manager.assigner == "utilization"
    assert load_config(ManagerConfig, env={"SECTORSTORAGE_MANAGER_ASSIGNER": "Spread"}).manager.assigner == "spread"
    with pytest.raises(ConfigError) as err:
        load_config(ManagerConfig, env={"SECTORSTORAGE_MANAGER_ASSIGNER": "random"})
    assert "manager.assigner" in str(err.value) and "utilization, spread" in str(err.value)
