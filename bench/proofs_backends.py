"""The two proofs backends side by side (issue 21): one sector of random data sealed by the
emulation (rust_core) and by Filecoin's proofs (rust_filecoin), PC1, PC2, C1, C2 (and AddPiece,
VerifySeal, optionally unseal) each timed in a fresh child process.

    python -m bench.proofs_backends [--sizes 2KiB,8MiB,512MiB] [--backends emulated,filecoin]
        [--unseal] [--json PATH] [--workdir DIR] [--keep] [--steps pc1,pc2,...] [--generate-parameters]

Why a child per step: each step's peak RSS is then its own (ru_maxrss of that process, from
os.wait4), and C2 includes loading the Groth16 parameters, as a worker's first C2 does. The steps
go through the worker's own seam (services/worker/proofs.py: the object `[proofs] backend` picks,
with the calls and arguments tasks.py makes), AddPiece through rust_core's one-pass AddPiece into
a partial file as the worker's PieceSink does, VerifySeal through the manager's verifier seam.
Blobs (PC1 and C1 outputs, the proof) and commitments pass between the children as files in the
work directory.

Figures per step: the call's wall and CPU time (user + system of all its threads, measured in the
child around the call itself) and the child's peak RSS; the "start" row is a child that only
imports and configures the backend, the floor under every other row's RSS. (Linux starts a
child's ru_maxrss from its parent's peak at fork, so this parent never holds more than a
megabyte of data.) The shared machine
makes wall time noisy: CPU time is printed beside it. Recorded results: docs/benchmarks.md.

Groth16 parameters come from `--params` (default ~/.cache/sectorstorage/filecoin-params, the
tests' cache; parents in its `parents/`). Nothing is generated unless `--generate-parameters`
(random parameters, NOT the network's: docs/filecoin-backend.md), which then runs generation as
a row of its own before C2; without it a missing file skips that size's filecoin C2 and
VerifySeal with one line naming the file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import services.worker.sealer as sealer
from services.common.config import ProofsBackend, ProofsConfig
from services.common.vocabulary import prover_id
from services.manager.verifier import for_config as verifier_for
from services.worker.partialfile import PartialFile
from services.worker.proofs import for_config as proofs_for
from services.worker.sealer import Piece

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"2KiB": 2 << 10, "8MiB": 8 << 20, "512MiB": 512 << 20}
BACKENDS = ("emulated", "filecoin")
STEPS = ("start", "addpiece", "pc1", "pc2", "c1", "c2", "verify")
MINER = 1000
NUMBER = 1
TICKET = bytes(range(1, 33))
SEED = bytes(range(33, 65))
PIECE = "piece.bin"
DEFAULT_PARAMS = Path(
    os.environ.get("SECTORSTORAGE_FIL_PARAMS", Path.home() / ".cache" / "sectorstorage" / "filecoin-params")
)


def size_name(size: int) -> str:
    return next((name for name, n in SIZES.items() if n == size), f"{size}B")


# --- the child: one step ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepArgs:
    step: str
    backend: str
    size: int
    workdir: Path  # this backend's sector files and blobs
    piece: Path  # the random unpadded data, shared by the backends of one size
    params: Path
    generate: bool


def _config(args: StepArgs) -> ProofsConfig:
    """`[proofs]` as a worker and manager of this backend would have it."""
    return ProofsConfig(
        backend=ProofsBackend(args.backend),
        parameter_cache=str(args.params),
        parent_cache=str(args.params / "parents"),
        generate_parameters_up_to=args.size if args.generate else 0,
    )


def _state(args: StepArgs) -> dict[str, str]:
    path = args.workdir / "state.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _save_state(args: StepArgs, **values: bytes) -> None:
    state = _state(args)
    state.update({k: v.hex() for k, v in values.items()})
    (args.workdir / "state.json").write_text(json.dumps(state))


def _pieces(args: StepArgs) -> list[Piece]:
    return [Piece(args.size, bytes.fromhex(_state(args)["commp"]))]


def _add_piece(args: StepArgs) -> None:
    """What the worker's PieceSink does: a fresh partial file, rust_core's one-pass AddPiece
    reading batches from a bounded queue that another thread fills, the range marked allocated."""
    unsealed = args.workdir / "unsealed"
    pf = PartialFile.create(unsealed, args.size)
    reader = sealer.QueueReader()

    def feed() -> None:
        with open(args.piece, "rb") as src:
            while batch := src.read(sealer.ADD_PIECE_BATCH):
                reader.put(batch)
        reader.put(None)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with open(unsealed, "r+b", buffering=0) as out:
        written, commp = sealer.add_piece_stream(reader, out)
    feeder.join()
    if written != args.size:
        raise RuntimeError(f"AddPiece wrote {written} padded bytes, expected {args.size}")
    pf.mark_allocated(0, args.size)
    pf.close()
    _save_state(args, commp=commp)


def _step_call(args: StepArgs) -> Callable[[], object]:
    """The step as a call; everything before it (imports, configuration, reading blobs) is
    outside the timed call."""
    d, prover = args.workdir, prover_id(MINER)
    if args.step == "start":
        config = _config(args)
        return lambda: proofs_for(config, isolate_calls=False)
    if args.step == "addpiece":
        return lambda: _add_piece(args)
    # What the worker's tasks call (TaskEnv.proofs), with the library in this process: the worker
    # runs each filecoin call in a child process of its own (services/common/proofs_process.py), and this child
    # already is one, whose CPU time and peak RSS must be the call's.
    p = proofs_for(_config(args), isolate_calls=False)
    if args.step == "pc1":
        (d / "cache").mkdir(exist_ok=True)
        pieces = _pieces(args)
        return lambda: (d / "p1.bin").write_bytes(
            p.pre_commit1(args.size, d / "cache", d / "unsealed", prover, NUMBER, TICKET, pieces)
        )
    if args.step == "pc2":
        p1 = (d / "p1.bin").read_bytes()

        def pc2() -> None:
            comm_r, comm_d = p.pre_commit2(p1, d / "cache", d / "sealed", "cpu")
            _save_state(args, comm_r=comm_r, comm_d=comm_d)

        return pc2
    if args.step == "c1":
        st, pieces = _state(args), _pieces(args)
        return lambda: (d / "c1.bin").write_bytes(
            p.commit1(
                args.size,
                d / "cache",
                d / "sealed",
                prover,
                NUMBER,
                TICKET,
                SEED,
                pieces,
                bytes.fromhex(st["comm_r"]),
                bytes.fromhex(st["comm_d"]),
            )
        )
    if args.step == "params":
        import rust_filecoin

        return lambda: (
            rust_filecoin.ensure_parameters(args.size, "seal", True),
            rust_filecoin.ensure_parameters(args.size, "seal", False),
        )
    if args.step == "c2":
        c1 = (d / "c1.bin").read_bytes()
        return lambda: (d / "proof.bin").write_bytes(p.commit2(c1, prover, NUMBER, "cpu"))
    if args.step == "verify":
        st, proof, v = _state(args), (d / "proof.bin").read_bytes(), verifier_for(_config(args))
        comm_r, comm_d = bytes.fromhex(st["comm_r"]), bytes.fromhex(st["comm_d"])

        def verify() -> None:
            if not v.verify_seal(args.size, comm_r, comm_d, prover, NUMBER, TICKET, SEED, proof):
                raise RuntimeError(f"the {args.backend} proof of the {size_name(args.size)} sector does not verify")

        return verify
    if args.step == "unseal":
        st, out = _state(args), d / "unsealed-again"
        PartialFile.create(out, args.size).close()
        length = args.size // 128 * 127

        def unseal() -> None:
            p.unseal(
                args.size,
                d / "cache",
                d / "sealed",
                out,
                prover,
                NUMBER,
                TICKET,
                bytes.fromhex(st["comm_d"]),
                0,
                length,
            )

        return unseal
    raise ValueError(f"unknown step {args.step!r}")


def _check_unsealed(args: StepArgs) -> None:
    """The unsealed copy holds the data that was sealed: compared after the timed call, 1 MiB at
    a time, so neither the figures nor the peak RSS include it."""
    with open(args.workdir / "unsealed-again", "rb") as a, open(args.workdir / "unsealed", "rb") as b:
        for offset in range(0, args.size, 1 << 20):  # the data area, not the trailers
            n = min(1 << 20, args.size - offset)
            if a.read(n) != b.read(n):
                raise RuntimeError(f"the {args.backend} unsealed data differs from the sealed data")


def run_step(args: StepArgs) -> int:
    """Runs one step in this process and writes the call's wall and CPU time to
    `<workdir>/<step>.time.json` for the parent."""
    if args.step == "missing":
        import rust_filecoin

        rust_filecoin.configure(args.params, args.params / "parents", generate_up_to=0)
        files = [f for f in rust_filecoin.parameter_files(args.size, "seal") if not Path(f).is_file()]
        (args.workdir / "missing.json").write_text(json.dumps(files))
        return 0
    call = _step_call(args)
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    call()
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if args.step == "unseal":
        _check_unsealed(args)
    (args.workdir / f"{args.step}.time.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu}))
    return 0


# --- the parent: children, table -----------------------------------------------------------------


@dataclass
class Row:
    size: str
    step: str
    backend: str
    wall_s: float | None  # the call alone (measured in the child)
    cpu_s: float | None
    peak_rss_bytes: int | None  # the child's ru_maxrss
    process_wall_s: float | None  # the child from fork to exit (interpreter start included)
    process_cpu_s: float | None
    skipped: str | None = None
    load_avg: float | None = None  # 1-minute load average as the step started (a shared machine)


def measure(args: StepArgs) -> Row:
    """Runs the step in a fresh child and reads its resources from os.wait4."""
    cmd = [sys.executable, "-m", "bench.proofs_backends", "--step", args.step, "--backend", args.backend]
    cmd += ["--size", str(args.size), "--workdir", str(args.workdir), "--piece", str(args.piece)]
    cmd += ["--params", str(args.params)] + (["--generate-parameters"] if args.generate else [])
    load, t0 = os.getloadavg()[0], time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - t0
    if child.returncode != 0:
        raise RuntimeError(f"{args.backend} {args.step} of {size_name(args.size)} failed (exit {child.returncode})")
    timed = json.loads((args.workdir / f"{args.step}.time.json").read_text())
    return Row(
        size=size_name(args.size),
        step=args.step,
        backend=args.backend,
        wall_s=float(timed["wall_s"]),
        cpu_s=float(timed["cpu_s"]),
        peak_rss_bytes=usage.ru_maxrss * 1024,
        process_wall_s=elapsed,
        process_cpu_s=usage.ru_utime + usage.ru_stime,
        load_avg=load,
    )


def missing_parameters(size: int, params: Path) -> list[str]:
    """The seal circuit's files missing from the cache, asked of a child: configuring the library
    is once per process, and the parent (a test's process, say) stays free of it."""
    out = Path(tempfile.mkdtemp(prefix="bench-params-"))
    try:
        cmd = [sys.executable, "-m", "bench.proofs_backends", "--step", "missing", "--backend", "filecoin"]
        cmd += ["--size", str(size), "--workdir", str(out), "--params", str(params)]
        subprocess.run(cmd, cwd=ROOT, check=True)
        return [str(f) for f in json.loads((out / "missing.json").read_text())]
    finally:
        shutil.rmtree(out, ignore_errors=True)


@dataclass(frozen=True)
class Options:
    params: Path
    generate: bool = False
    steps: tuple[str, ...] = STEPS  # in STEPS' order; "unseal" may follow
    # Keep each sector's files (`<workdir>/<size>-<backend>/`): a later run with the same
    # --workdir and --steps (say c2,verify once the parameters exist) continues that sector.
    keep: bool = False


def bench_backend(size: int, backend: str, root: Path, opts: Options) -> tuple[list[Row], str]:
    """One sector through the steps, each in its own child; the rows and the sector's commD."""
    params, generate = opts.params, opts.generate
    workdir = root / f"{size_name(size)}-{backend}"
    workdir.mkdir(exist_ok=opts.keep)
    steps = list(opts.steps)
    missing = missing_parameters(size, params) if backend == "filecoin" and "c2" in steps else []
    if missing and generate:
        steps.insert(steps.index("c2"), "params")
    skipped: set[str] = set()
    if missing and not generate:
        skipped = {"c2", "verify"}
        for name in missing:
            print(
                f"missing Groth16 parameters {name} for {size_name(size)}: filecoin C2 and VerifySeal skipped "
                "(install them, or pass --generate-parameters for random test parameters)",
                flush=True,
            )
    rows = []
    try:
        for step in steps:
            if step in skipped:
                rows.append(Row(size_name(size), step, backend, None, None, None, None, None, "parameters missing"))
            else:
                rows.append(measure(StepArgs(step, backend, size, workdir, root / PIECE, params, generate)))
        comm_d = _state(StepArgs("", backend, size, workdir, root / PIECE, params, generate)).get("comm_d", "")
    finally:
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows, comm_d


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 120:
        return f"{s:.2f} s"
    whole = round(s)
    return f"{whole // 60} min {whole % 60} s"


def fmt_rss(b: int | None) -> str:
    return "-" if b is None else f"{b / (1 << 20):.0f} MiB"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    r = a / b
    return f"{r:,.0f}x" if r >= 100 else f"{r:.3g}x"


def table(rows: list[Row], backends: list[str]) -> str:
    """One line per (size, step): each backend's wall / CPU / peak RSS, then filecoin / emulated."""
    by = {(r.size, r.step, r.backend): r for r in rows}
    keys = list(dict.fromkeys((r.size, r.step) for r in rows))
    head = ["size", "step"]
    for b in backends:
        head += [f"{b} wall", f"{b} CPU", f"{b} peak RSS"]
    both = set(BACKENDS) <= set(backends)
    if both:
        head += ["wall fc/emu", "CPU fc/emu", "RSS fc/emu"]
    lines = [head]
    for size, step in keys:
        line = [size, step]
        for b in backends:
            r = by.get((size, step, b))
            if r is None:
                line += ["", "", ""]
            elif r.skipped:
                line += [f"skipped ({r.skipped})", "", ""]
            else:
                line += [fmt_time(r.wall_s), fmt_time(r.cpu_s), fmt_rss(r.peak_rss_bytes)]
        if both:
            e, f = by.get((size, step, "emulated")), by.get((size, step, "filecoin"))
            ew, fw = (e.wall_s if e else None), (f.wall_s if f else None)
            ec, fc = (e.cpu_s if e else None), (f.cpu_s if f else None)
            er = float(e.peak_rss_bytes) if e and e.peak_rss_bytes else None
            fr = float(f.peak_rss_bytes) if f and f.peak_rss_bytes else None
            line += [fmt_ratio(fw, ew), fmt_ratio(fc, ec), fmt_ratio(fr, er)]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def bench(sizes: list[int], backends: list[str], root: Path, opts: Options) -> list[Row]:
    """Every size through every backend; the backends must agree on each sector's commD (same
    data, and fr32 and commD are Filecoin's in both)."""
    rows: list[Row] = []
    for size in sizes:
        piece = root / PIECE
        if "addpiece" in opts.steps:
            with open(piece, "wb") as f:
                left = size // 128 * 127
                while left:
                    chunk = min(left, 1 << 20)  # the parent stays small (see the top)
                    f.write(os.urandom(chunk))
                    left -= chunk
        comm_ds = {}
        try:
            for backend in backends:
                print(f"{size_name(size)} {backend} ...", flush=True)
                more, comm_ds[backend] = bench_backend(size, backend, root, opts)
                rows += more
        finally:
            piece.unlink(missing_ok=True)
        if len(set(comm_ds.values())) > 1:
            raise RuntimeError(f"the backends' commD differ for {size_name(size)}: {comm_ds}")
        print(f"{size_name(size)}: commD {next(iter(comm_ds.values()))} (the same in {', '.join(comm_ds)})", flush=True)
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2KiB", help=f"comma-separated, of {', '.join(SIZES)} (default 2KiB)")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default emulated,filecoin)")
    ap.add_argument("--unseal", action="store_true", help="also time unsealing the whole sector (and check it)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    ap.add_argument("--workdir", type=Path, help="scratch directory (default: a new one under /var/tmp, removed)")
    ap.add_argument("--steps", default=",".join(STEPS[1:]), help="comma-separated subset (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the sectors in --workdir, to run later --steps on them")
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="Groth16 parameter cache (parents/ inside)")
    ap.add_argument("--generate-parameters", action="store_true", help="generate missing (random, test) parameters")
    # The child's side (what the parent passes; not for people).
    ap.add_argument("--step", choices=[*STEPS, "params", "unseal", "missing"], help=argparse.SUPPRESS)
    ap.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--piece", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if a.step:
        return run_step(StepArgs(a.step, a.backend, a.size, a.workdir, a.piece, a.params, a.generate_parameters))
    try:
        sizes = [SIZES[s.strip()] for s in a.sizes.split(",")]
    except KeyError as exc:
        print(f"unknown size {exc.args[0]!r}: use {', '.join(SIZES)}", file=sys.stderr)
        return 2
    backends = [b.strip() for b in a.backends.split(",")]
    if bad := [b for b in backends if b not in BACKENDS]:
        print(f"unknown backend {bad[0]!r}: use {', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    if "filecoin" in backends:
        try:
            import rust_filecoin  # noqa: F401
        except ImportError:
            print("the filecoin backend is not built: run `make develop-filecoin`", file=sys.stderr)
            return 2
    steps = [s.strip() for s in a.steps.split(",")] + (["unseal"] if a.unseal else [])
    if bad := [s for s in steps if s not in (*STEPS, "unseal")]:
        print(f"unknown step {bad[0]!r}: use {', '.join((*STEPS, 'unseal'))}", file=sys.stderr)
        return 2
    ordered = tuple(s for s in (*STEPS, "unseal") if s in ["start", *steps])
    root = a.workdir or Path(tempfile.mkdtemp(prefix="bench-proofs-", dir="/var/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        rows = bench(sizes, backends, root, Options(a.params, a.generate_parameters, ordered, a.keep))
    finally:
        if not a.keep and a.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(rows, backends))
    loads = [r.load_avg for r in rows if r.load_avg is not None]
    if loads:
        print(f"1-min load average as the steps started: {min(loads):.2f} to {max(loads):.2f} ({os.cpu_count()} CPUs)")
    print("wall and CPU: the call alone, in a fresh process; peak RSS: that process's (see the 'start' row)")
    if a.json:
        a.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
