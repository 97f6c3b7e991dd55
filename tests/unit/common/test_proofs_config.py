"""`[proofs]`: the fleet's proofs backend in the config, and its start-up check."""

from pathlib import Path

import pytest

from services.common.config import ConfigError, ProofsBackend, ProofsConfig, load_config
from services.common.startup import StartupError, check_proofs_backend
from services.manager.config import ManagerConfig
from services.worker.config import WorkerConfig


def test_emulated_is_the_default_everywhere() -> None:
    for model in (WorkerConfig, ManagerConfig):
        config = load_config(model, env={})
        assert config.proofs.backend is ProofsBackend.EMULATED
        assert config.proofs.generate_parameters_up_to == 0
    check_proofs_backend(ProofsConfig())  # starts


def test_file_and_env_select_the_backend(tmp_path: Path) -> None:
    toml = tmp_path / "fleet.toml"
    toml.write_text(
        '[proofs]\nbackend = "filecoin"\nparameter_cache = "/srv/params"\ngenerate_parameters_up_to = 2048\n'
    )
    config = load_config(WorkerConfig, toml, env={})
    assert config.proofs == ProofsConfig(
        backend=ProofsBackend.FILECOIN, parameter_cache="/srv/params", generate_parameters_up_to=2048
    )
    config = load_config(WorkerConfig, toml, env={"SECTORSTORAGE_PROOFS_BACKEND": "emulated"})
    assert config.proofs.backend is ProofsBackend.EMULATED


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'proofs.backend' / SECTORSTORAGE_PROOFS_BACKEND"):
        load_config(WorkerConfig, env={"SECTORSTORAGE_PROOFS_BACKEND": "real"})
    with pytest.raises(ConfigError, match=r"'proofs.generate_parameters_up_to'"):
        load_config(WorkerConfig, env={"SECTORSTORAGE_PROOFS_GENERATE_PARAMETERS_UP_TO": "-1"})
    toml = tmp_path / "fleet.toml"
    toml.write_text('[proofs]\nbackend = "filecoin"\nparams = "/x"\n')
    with pytest.raises(ConfigError, match=r"unknown config key 'proofs.params'"):
        load_config(WorkerConfig, toml, env={})


def test_filecoin_needs_the_extension() -> None:
    """Refused without rust_filecoin (one line naming the make target); with it, it starts: the
    worker's tasks and the manager's verifier call it."""
    filecoin = ProofsConfig(backend=ProofsBackend.FILECOIN)
    with pytest.raises(StartupError, match=r"needs the rust_filecoin extension.*make develop-filecoin"):
        check_proofs_backend(filecoin, installed=lambda module: False)
    check_proofs_backend(filecoin, installed=lambda module: module == "rust_filecoin")
