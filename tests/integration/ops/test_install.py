"""`pip install .` into a fresh virtualenv builds rust_core and installs the services and their
console scripts: what a new operator or a Dockerfile does."""

import subprocess
import venv
from pathlib import Path

import pytest

from tests.support.paths import REPO


@pytest.mark.slow
def test_pip_install_into_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(REPO)], capture_output=True, text=True, timeout=900
    )
    assert install.returncode == 0, install.stderr[-4000:]
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import rust_core, services.index.main, services.common.proto.sectorstorage.v1.index_pb2; print(rust_core.__version__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    for script in (
        "sectorstorage-index",
        "sectorstorage-manager",
        "sectorstorage-worker",
        "sectorstorage-web",
        "sectorctl",
    ):
        result = subprocess.run([str(env_dir / "bin" / script), "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage" in result.stdout, (script, result.stderr)
