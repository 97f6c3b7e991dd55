"""The CUDA kernels' hashing logic, checked without a GPU: kernels.cu also compiles as plain C
(each kernel a function of its thread index), so we build it with the host C compiler, call it
through ctypes and compare every kernel with hashlib and with the CPU backend's definitions."""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess

import pytest

from tests.support.paths import REPO

KERNELS = REPO / "rust_core" / "src" / "gpu" / "kernels.cu"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    if CC is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("k") / "libkernels.so"
    subprocess.run([CC, "-O1", "-shared", "-fPIC", "-x", "c", str(KERNELS), "-o", str(out)], check=True)
    dll = ctypes.CDLL(str(out))
    u64, p = ctypes.c_uint64, ctypes.c_char_p
    dll.hash_level.argtypes = [u64, p, ctypes.c_void_p, u64]
    dll.hash_columns.argtypes = [u64, p, ctypes.c_void_p, u64, ctypes.c_uint32]
    dll.witness_leaves.argtypes = [u64, p, ctypes.c_void_p, u64, u64]
    return dll


def trunc(data: bytes) -> bytes:
    d = bytearray(hashlib.sha256(data).digest())
    d[31] &= 0x3F
    return bytes(d)


def nodes(n: int, salt: int) -> bytes:
    return b"".join(hashlib.sha256(bytes([salt]) + i.to_bytes(4, "little")).digest() for i in range(n))


def test_hash_level_kernel(lib: ctypes.CDLL) -> None:
    n = 8
    children = nodes(2 * n, 1)
    out = ctypes.create_string_buffer(32 * n)
    for i in range(n):
        lib.hash_level(i, children, out, n)
    for i in range(n):
        assert out.raw[32 * i : 32 * i + 32] == trunc(children[64 * i : 64 * i + 64])


@pytest.mark.parametrize("layers", [1, 2, 3, 11])
def test_hash_columns_kernel(lib: ctypes.CDLL, layers: int) -> None:
    n = 5
    data = nodes(layers * n, 2)  # layer-major
    out = ctypes.create_string_buffer(32 * n)
    for i in range(n):
        lib.hash_columns(i, data, out, n, layers)
    for i in range(n):
        column = b"".join(data[32 * (layer * n + i) : 32 * (layer * n + i) + 32] for layer in range(layers))
        assert out.raw[32 * i : 32 * i + 32] == trunc(column)


def test_witness_leaves_kernel(lib: ctypes.CDLL) -> None:
    t = bytes(range(32))
    first = (1 << 33) + 5
    out = ctypes.create_string_buffer(32 * 4)
    for i in range(4):
        lib.witness_leaves(i, t, out, first, 4)
    for i in range(4):
        assert out.raw[32 * i : 32 * i + 32] == trunc(t + (first + i).to_bytes(8, "little"))
