"""Generate the Python protobuf/gRPC code from protos/ into services/common/proto/.

The protos are the one source of truth; the generated files are committed so that an installed
package needs no protoc, and `--check` (run by the tests) fails when they are stale.

protoc writes absolute imports (`from sectorstorage.v1 import common_pb2`); we rewrite them to
the package the code lives in, so no sys.path trick is needed at run time.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = "services.common.proto"
OUT_DIR = ROOT / "services" / "common" / "proto"

_IMPORT_RE = re.compile(r"^from sectorstorage\.v1 import ", re.MULTILINE)


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc (with mypy stubs) on every proto into out_dir and fix up imports."""
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    if not files:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    out_dir.mkdir(parents=True, exist_ok=True)
    # The mypy plugins live next to this interpreter (the venv's bin/), which need not be on PATH.
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for py in out_dir.rglob("*.py*"):
        text = py.read_text()
        fixed = _IMPORT_RE.sub(f"from {OUT_PACKAGE}.sectorstorage.v1 import ", text)
        fixed = fixed.replace("import sectorstorage.v1.", f"import {OUT_PACKAGE}.sectorstorage.v1.")
        if fixed != text:
            py.write_text(fixed)
    # Make every generated directory a package.
    for d in [out_dir, *[p for p in out_dir.rglob("*") if p.is_dir()]]:
        init = d / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n')


def stale_files(expected: Path, actual: Path) -> list[str]:
    """Paths (relative) that differ between a fresh generation and what is committed."""
    diffs: list[str] = []
    exp = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    act = {p.relative_to(actual) for p in actual.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    for rel in sorted(exp | act):
        if rel not in exp or rel not in act or not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            diffs.append(str(rel))
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "proto"
            generate(fresh)
            diffs = stale_files(fresh, OUT_DIR)
        if diffs:
            print("generated code is stale; run `make protos`. Differs:", *diffs, sep="\n  ", file=sys.stderr)
            return 1
        print("generated code matches protos/")
        return 0
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    generate(OUT_DIR)
    print(f"generated {OUT_DIR.relative_to(ROOT)} from {len(proto_files())} proto files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
