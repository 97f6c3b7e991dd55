"""PoRep emulation benchmark: runs `rust_core/examples/bench_porep.rs`, which prints the labeling
rate against the SHA-256 compression limit, scaling over cores, one sector's PC1/PC2/C1/C2/verify
wall time and peak memory, and 32 GiB figures extrapolated from the measured rates.

    python bench/porep.py [--size 8MiB|512MiB] [--workdir DIR]

Results and the published Lotus figures they are compared with: docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CRATE = Path(__file__).resolve().parents[1] / "rust_core"


def main(argv: list[str]) -> int:
    cmd = ["cargo", "run", "--quiet", "--release", "--example", "bench_porep", "--", *argv]
    return subprocess.call(cmd, cwd=CRATE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
