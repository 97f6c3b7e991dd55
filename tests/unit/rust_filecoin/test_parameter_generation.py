"""Local Groth16 parameter generation survives being killed (rust_filecoin params.rs): the worker
kills the child process of a stopped task, and the library writes a generated file in place, so
an interrupted generation must never leave a file that looks complete.

Each case runs in a process of its own with a throwaway parameter cache (the library reads its
cache directory once per process), on the smallest circuit: the 2 KiB Window PoSt (about 13 s to
generate on this machine, 11.5 MB).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

rust_filecoin = pytest.importorskip(
    "rust_filecoin",
    reason="rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`",
)

pytestmark = pytest.mark.slow

SIZE = 2048


def run(cache: Path, generate_up_to: int, code: str, wait: bool = True) -> subprocess.Popen[str]:
    script = textwrap.dedent(
        f"""
        import rust_filecoin as f
        f.configure({str(cache)!r}, None, generate_up_to={generate_up_to})
        params, vk = f.parameter_files({SIZE}, "window")
        """
    ) + textwrap.dedent(code)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        proc.wait(timeout=300)
    return proc


def files(cache: Path) -> tuple[Path, Path, Path]:
    """The circuit's params, verifying key and marker under `cache` (asked of a process of its
    own: this one may configure the library for another cache)."""
    out = run(cache, 0, "print(params); print(vk)\n")
    assert out.stdout is not None
    params, vk = (Path(line) for line in out.stdout.read().split())
    assert params.parent == cache
    return params, vk, Path(f"{params}.partial")


def test_a_killed_generation_is_redone_not_trusted(tmp_path: Path) -> None:
    cache = tmp_path / "params"
    started = run(cache, SIZE, 'f.ensure_parameters(2048, "window")\n', wait=False)
    params, vk, marker = files(cache)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "generation did not start"
    time.sleep(1.0)
    started.send_signal(signal.SIGKILL)
    started.wait()
    # What a writer killed halfway leaves: a truncated file (written here, to be sure the case
    # of a kill during the write itself is covered) and the marker.
    params.write_bytes(b"\x00" * 1000)

    # A process that may not generate says so, naming both files, instead of loading garbage.
    refused = run(
        cache,
        0,
        """
        try:
            f.ensure_parameters(2048, "window")
        except f.MissingParameters as e:
            print(e)
        """,
    )
    assert refused.stdout is not None
    message = refused.stdout.read()
    assert "incomplete Groth16 parameters file" in message and str(marker) in message, message

    # One that may generate removes the remains and generates again.
    redone = run(cache, SIZE, 'print(f.ensure_parameters(2048, "window"))\n')
    assert redone.returncode == 0, redone.stderr.read() if redone.stderr else ""
    assert redone.stdout is not None
    took = redone.stdout.read().strip()
    assert took != "None" and float(took) > 0
    assert not marker.exists()
    assert params.stat().st_size > 1_000_000 and vk.stat().st_size > 0
    # And then the files are simply there.
    again = run(cache, 0, 'print(f.ensure_parameters(2048, "window"))\n')
    assert again.stdout is not None and again.stdout.read().strip() == "None"


def test_complete_files_without_a_marker_are_used_as_they_are(tmp_path: Path) -> None:
    """The network's parameter files never have a marker: nothing about them changes."""
    cache = tmp_path / "params"
    cache.mkdir()
    params, _, marker = files(cache)
    params.write_bytes(b"not checked here")
    out = run(cache, 0, 'print(f.ensure_parameters(2048, "window"))\n')
    assert out.stdout is not None and out.stdout.read().strip() == "None"
    assert not marker.exists() and not Path(f"{params}.lock").exists()
    os.remove(params)


def test_the_production_sizes_use_the_networks_files_and_are_never_generated(tmp_path: Path) -> None:
    """32 and 64 GiB sectors are the network's proof types: their parameter files have the names
    `paramfetch` downloads (the circuit's hash), and no setting makes this process generate
    them (random parameters are for tests; these would take days)."""
    out = run(
        tmp_path,
        1 << 40,
        """
        for size in (32 << 30, 64 << 30):
            print(f.parameter_files(size, "seal")[0].rsplit("/", 1)[1])
            try:
                f.ensure_parameters(size, "seal")
            except f.MissingParameters as e:
                print("refused:", e)
        """,
    )
    assert out.stdout is not None
    lines = out.stdout.read().splitlines()
    assert lines[0] == (
        "v28-stacked-proof-of-replication-merkletree-poseidon_hasher-8-8-0-sha256_hasher-"
        "82a357d2f2ca81dc61bb45f4a762807aedee1b0a53fd6c4e77b46a01bfef7820.params"
    )
    assert lines[2] == (
        "v28-stacked-proof-of-replication-merkletree-poseidon_hasher-8-8-2-sha256_hasher-"
        "96f1b4a04c5c51e4759bbf224bbc2ef5a42c7100f16ec0637123f16a845ddfb2.params"
    )
    for refusal, size in ((lines[1], "32 GiB"), (lines[3], "64 GiB")):
        assert refusal.startswith("refused: missing Groth16 parameters file") and f"({size})" in refusal, refusal
    assert not list(tmp_path.glob("*.params"))
