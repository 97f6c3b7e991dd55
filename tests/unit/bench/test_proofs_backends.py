"""bench/proofs_backends.py's machinery on a 2 KiB sector, not its figures: every step runs in a
child of its own and reports its resources, the sector really verifies and unseals, and a missing
parameters file skips C2 with one line naming it. A few seconds; the timed runs are
`make bench-proofs` (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import proofs_backends as pb

SIZE = 2048


def test_a_2kib_emulated_sector_goes_through_every_step_in_children(tmp_path: Path) -> None:
    rows = pb.bench([SIZE], ["emulated"], tmp_path, pb.Options(tmp_path / "no-params", steps=(*pb.STEPS, "unseal")))
    assert [r.step for r in rows] == [*pb.STEPS, "unseal"]
    for r in rows:
        assert (r.size, r.backend, r.skipped) == ("2KiB", "emulated", None)
        assert r.wall_s is not None and r.process_wall_s is not None and 0 <= r.wall_s <= r.process_wall_s
        assert r.cpu_s is not None and r.cpu_s >= 0
        # A Python interpreter with rust_core loaded: megabytes, not kilobytes (ru_maxrss is KiB).
        assert r.peak_rss_bytes is not None and r.peak_rss_bytes > 10 << 20
    assert list(tmp_path.iterdir()) == []  # the sector's files and the piece are gone
    text = pb.table(rows, ["emulated"])
    assert "| 2KiB | c2 " in text and "emulated peak RSS" in text and "fc/emu" not in text


def test_a_failing_step_names_the_backend_step_and_size(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    args = pb.StepArgs("pc2", "emulated", SIZE, tmp_path / "s", tmp_path / "piece", tmp_path, False)
    with pytest.raises(RuntimeError, match="emulated pc2 of 2KiB failed"):
        pb.measure(args)  # no PC1 output in the work dir


def test_missing_parameters_skip_c2_and_verify_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rust_filecoin", reason="rust_filecoin is not built: run `make develop-filecoin`")
    params, work = tmp_path / "empty-params", tmp_path / "work"
    work.mkdir()
    rows = pb.bench([SIZE], ["emulated", "filecoin"], work, pb.Options(params))
    out = capsys.readouterr().out
    assert "missing Groth16 parameters" in out and "v28-stacked-proof-of-replication" in out and "2KiB" in out
    fc = {r.step: r for r in rows if r.backend == "filecoin"}
    assert fc["c2"].skipped == fc["verify"].skipped == "parameters missing"
    assert all(fc[s].skipped is None and fc[s].peak_rss_bytes for s in ("addpiece", "pc1", "pc2", "c1"))
    assert not list(params.glob("*.params"))  # nothing generated
    text = pb.table(rows, ["emulated", "filecoin"])
    assert "skipped (parameters missing)" in text and "wall fc/emu" in text


def test_kept_sectors_go_on_with_later_steps(tmp_path: Path) -> None:
    """What a run does once the parameters exist: C2 and VerifySeal of the sector sealed before."""
    first = pb.bench([SIZE], ["emulated"], tmp_path, pb.Options(tmp_path, steps=pb.STEPS[:5], keep=True))
    assert [r.step for r in first] == ["start", "addpiece", "pc1", "pc2", "c1"]
    assert not (tmp_path / pb.PIECE).exists() and (tmp_path / "2KiB-emulated" / "c1.bin").is_file()
    later = pb.bench([SIZE], ["emulated"], tmp_path, pb.Options(tmp_path, steps=("start", "c2", "verify"), keep=True))
    assert [(r.step, r.skipped) for r in later] == [("start", None), ("c2", None), ("verify", None)]


def test_times_print_in_the_unit_a_reader_wants() -> None:
    assert [pb.fmt_time(s) for s in (0.0021, 1.5, 179.6, 362.08)] == ["2.1 ms", "1.50 s", "3 min 0 s", "6 min 2 s"]
    assert pb.fmt_time(None) == "-"
