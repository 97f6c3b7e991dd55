"""A second, independent verifier of seal proofs, written in Python from docs/porep-emulation.md
alone (not from the Rust code), to show the document is enough to reimplement the verifier."""

from __future__ import annotations

import hashlib
import struct

R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
PARAMS = {  # size: (layers, porep challenges, witness log2)
    2048: (2, 2, 10),
    8 << 20: (2, 2, 14),
    512 << 20: (2, 2, 26),
    32 << 30: (11, 176, 33),
    64 << 30: (11, 176, 33),
}
SPOTS = 16
MASK64 = (1 << 64) - 1


def sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def trunc(d: bytes) -> bytes:
    return d[:31] + bytes([d[31] & 0x3F])


def node_hash(a: bytes, b: bytes) -> bytes:
    return trunc(sha(a, b))


def le64(v: int) -> bytes:
    return struct.pack("<Q", v)


def first_u64(d: bytes) -> int:
    return int(struct.unpack("<Q", d[:8])[0])


def root_from_path(leaf: bytes, index: int, path: list[bytes]) -> bytes:
    cur = leaf
    for k, sib in enumerate(path):
        cur = node_hash(cur, sib) if (index >> k) & 1 == 0 else node_hash(sib, cur)
    return cur


def path_ok(leaf: bytes, index: int, path: list[bytes], root: bytes) -> bool:
    return index >> len(path) == 0 and root_from_path(leaf, index, path) == root


class Graph:
    def __init__(self, size: int) -> None:
        self.seed = sha(b"sectorstorage/porep/v1/graph-seed", le64(size))
        self.nodes = size // 32
        self.keys = [first_u64(sha(b"sectorstorage/porep/v1/feistel", self.seed, bytes([r]))) for r in range(3)]
        self.half = ((8 * self.nodes).bit_length() - 1 + 1) // 2

    @staticmethod
    def mix64(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def feistel(self, x: int) -> int:
        mask = (1 << self.half) - 1
        left, right = x >> self.half, x & mask
        for key in self.keys:
            left, right = right, left ^ (self.mix64(right ^ key) & mask)
        return (left << self.half) | right

    def parents(self, i: int) -> list[int]:
        h = sha(b"sectorstorage/porep/v1/drg", self.seed, le64(i))
        base = [i - 1]
        b = i.bit_length()
        for k in range(1, 6):
            x = int.from_bytes(h[6 * (k - 1) : 6 * k], "little")
            e = (x % 64) % b
            base.append(i - 1 - ((x >> 6) % min(i, 2 ** (e + 1))))
        expander = []
        for k in range(8):
            x = self.feistel(8 * i + k)
            while x >= 8 * self.nodes:
                x = self.feistel(x)
            expander.append(x // 8)
        return base + expander


def label(replica_id: bytes, layer: int, node: int, parent_labels: list[bytes]) -> bytes:
    prefix = replica_id + struct.pack("<I", layer) + le64(node) + bytes(20)
    slots = b"".join(parent_labels[s % len(parent_labels)] for s in range(37)) if parent_labels else b""
    return trunc(sha(prefix, slots))


class Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError("truncated")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def nodes(self, n: int) -> list[bytes]:
        return [self.take(32) for _ in range(n)]


def verify_seal(
    size: int,
    comm_r: bytes,
    comm_d: bytes,
    prover_id: bytes,
    sector_number: int,
    ticket: bytes,
    seed: bytes,
    proof: bytes,
) -> bool:
    layers, count, w = PARAMS[size]
    n = size // 32
    h = n.bit_length() - 1
    try:
        r = Reader(proof)
        if r.take(4) != b"SSPF" or r.take(2) != struct.pack("<H", 1) or r.take(8) != le64(size):
            return False
        comm_c, comm_r_last = r.take(32), r.take(32)
        if r.take(4) != struct.pack("<I", count):
            return False
        v_start = r.pos
        challenges = []
        for _ in range(count):
            c = first_u64(r.take(8))
            data, data_path = r.take(32), r.nodes(h)
            replica, replica_path = r.take(32), r.nodes(h)
            columns = [(r.nodes(layers), r.nodes(h)) for _ in range(15)]
            challenges.append((c, data, data_path, replica, replica_path, columns))
        vanilla = proof[v_start : r.pos]
        witness_root = r.take(32)
        spots = [r.nodes(w) for _ in range(SPOTS)]
        if r.pos != len(proof):
            return False
    except ValueError:
        return False

    if node_hash(comm_c, comm_r_last) != comm_r:
        return False
    porep_id = b"ssporep1" + le64(size) + bytes(16)
    replica_id = trunc(
        sha(b"sectorstorage/porep/v1/replica-id", prover_id, le64(sector_number), ticket, comm_d, porep_id)
    )
    graph = Graph(size)
    for j, (c, data, data_path, replica, replica_path, columns) in enumerate(challenges):
        if c != 1 + first_u64(sha(b"sectorstorage/porep/v1/challenge", replica_id, seed, le64(j))) % (n - 1):
            return False
        if not path_ok(data, c, data_path, comm_d) or not path_ok(replica, c, replica_path, comm_r_last):
            return False
        indices = [c] + graph.parents(c)
        for idx, (labels, path) in zip(indices, columns):
            if not path_ok(trunc(sha(*labels)), idx, path, comm_c):
                return False
        own, parents = columns[0][0], [col[0] for col in columns[1:]]
        for layer in range(1, layers + 1):
            base = [p[layer - 1] for p in parents[:6]]
            plist = base if layer == 1 else base + [p[layer - 2] for p in parents[6:]]
            if label(replica_id, layer, c, plist) != own[layer - 1]:
                return False
        d, k, rep = (int.from_bytes(x, "little") for x in (data, own[layers - 1], replica))
        if max(d, k, rep) >= R or (d + k) % R != rep:
            return False
    t = sha(
        b"sectorstorage/porep/v1/c2-transcript",
        le64(size),
        prover_id,
        le64(sector_number),
        ticket,
        seed,
        comm_d,
        comm_r,
        comm_c,
        comm_r_last,
        sha(vanilla),
    )
    for s, path in enumerate(spots):
        pos = first_u64(sha(b"sectorstorage/porep/v1/c2-spot", t, witness_root, struct.pack("<I", s))) % (1 << w)
        if not path_ok(trunc(sha(t, le64(pos))), pos, path, witness_root):
            return False
    return True
