"""The NVRTC a CUDA image ships is the one CI compiles the kernels with: one pin, in the `cuda`
extra, repeated in the test extra (what `make test-rust-nvrtc` installs) and installed by the
Dockerfile through the extra."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NVRTC = "nvidia-cuda-nvrtc-cu12"


def test_the_cuda_extra_and_the_test_tools_pin_the_same_nvrtc() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    [shipped] = [r for r in extras["cuda"] if r.startswith(NVRTC)]
    assert "==" in shipped, shipped
    checked = [r for name, reqs in extras.items() if name != "cuda" for r in reqs if r.startswith(NVRTC)]
    assert checked == [shipped]


def test_a_cuda_image_installs_nvrtc_through_the_extra() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "[postgres,cuda]" in dockerfile
    assert NVRTC not in dockerfile.replace("nvidia/cuda_nvrtc", "")
