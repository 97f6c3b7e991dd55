// CUDA kernels of the sectorstorage hashing backend (compiled at run time with NVRTC).
//
// The same source also compiles as plain C (without __CUDACC__), where each kernel is an
// ordinary function of one thread index: tests/unit/rust_core/test_porep_cuda_source.py builds it with the
// host C compiler and checks every kernel against hashlib, so the hashing logic is tested on
// machines without a GPU. rust_core/tests/nvrtc_compile.rs compiles it with NVRTC (PTX and sm_80 /
// sm_90 machine code) and checks every kernel the host launches is there. One thread computes one
// output node.

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

#ifdef __CUDACC__
#define DEVICE __device__ static
#define KERNEL extern "C" __global__ void
#define THREAD_INDEX ((u64)blockIdx.x * (u64)blockDim.x + (u64)threadIdx.x)
#define KERNEL_ARGS
#else
#define DEVICE static
#define KERNEL void
#define THREAD_INDEX thread_index
#define KERNEL_ARGS u64 thread_index,
#endif

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

DEVICE const u32 K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

DEVICE void sha256_init(u32 s[8]) {
    s[0] = 0x6a09e667; s[1] = 0xbb67ae85; s[2] = 0x3c6ef372; s[3] = 0xa54ff53a;
    s[4] = 0x510e527f; s[5] = 0x9b05688c; s[6] = 0x1f83d9ab; s[7] = 0x5be0cd19;
}

// One compression of a 64-byte block given as 16 big-endian words.
DEVICE void sha256_compress(u32 s[8], const u32 block[16]) {
    u32 w[64];
    for (int i = 0; i < 16; i++) w[i] = block[i];
    for (int i = 16; i < 64; i++) {
        u32 s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        u32 s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    u32 a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int i = 0; i < 64; i++) {
        u32 t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        u32 t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

// Big-endian words of 32 bytes into block[off .. off + 8].
DEVICE void load_node(u32 *block, int off, const u8 *p) {
    for (int i = 0; i < 8; i++)
        block[off + i] = ((u32)p[4 * i] << 24) | ((u32)p[4 * i + 1] << 16) |
                         ((u32)p[4 * i + 2] << 8) | (u32)p[4 * i + 3];
}

// The digest as bytes, top two bits of byte 31 cleared (sha2-256-trunc254-padded).
DEVICE void store_trunc254(u8 *out, const u32 s[8]) {
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (u8)(s[i] >> 24); out[4 * i + 1] = (u8)(s[i] >> 16);
        out[4 * i + 2] = (u8)(s[i] >> 8); out[4 * i + 3] = (u8)s[i];
    }
    out[31] &= 0x3f;
}

// out[i] = H(children[2i] || children[2i+1]) for i < n.
KERNEL hash_level(KERNEL_ARGS const u8 *children, u8 *out, u64 n) {
    u64 i = THREAD_INDEX;
    if (i >= n) return;
    u32 s[8], block[16];
    sha256_init(s);
    load_node(block, 0, children + 64 * i);
    load_node(block, 8, children + 64 * i + 32);
    sha256_compress(s, block);
    for (int k = 0; k < 16; k++) block[k] = 0;
    block[0] = 0x80000000u;
    block[15] = 512;
    sha256_compress(s, block);
    store_trunc254(out + 32 * i, s);
}

// out[i] = SHA-256(layers[0][i] || ... || layers[L-1][i]) trimmed; layers is layer-major.
KERNEL hash_columns(KERNEL_ARGS const u8 *layers, u8 *out, u64 n, u32 num_layers) {
    u64 i = THREAD_INDEX;
    if (i >= n) return;
    u32 s[8], block[16];
    sha256_init(s);
    u32 l = 0;
    for (; l + 1 < num_layers; l += 2) {
        load_node(block, 0, layers + 32 * (l * n + i));
        load_node(block, 8, layers + 32 * ((l + 1) * n + i));
        sha256_compress(s, block);
    }
    for (int k = 0; k < 16; k++) block[k] = 0;
    u64 bits = (u64)num_layers * 256;
    if (l < num_layers) {
        load_node(block, 0, layers + 32 * (l * n + i));
        block[8] = 0x80000000u;
    } else {
        block[0] = 0x80000000u;
    }
    block[14] = (u32)(bits >> 32);
    block[15] = (u32)bits;
    sha256_compress(s, block);
    store_trunc254(out + 32 * i, s);
}

// out[i] = SHA-256(transcript || (first + i) as u64 LE) trimmed: the C2 witness leaves.
KERNEL witness_leaves(KERNEL_ARGS const u8 *transcript, u8 *out, u64 first, u64 n) {
    u64 i = THREAD_INDEX;
    if (i >= n) return;
    u64 j = first + i;
    u32 s[8], block[16];
    sha256_init(s);
    load_node(block, 0, transcript);
    // Bytes 32..39: j little-endian, read as two big-endian words.
    u32 lo = (u32)j, hi = (u32)(j >> 32);
    block[8] = ((lo & 0xff) << 24) | (((lo >> 8) & 0xff) << 16) | (((lo >> 16) & 0xff) << 8) | (lo >> 24);
    block[9] = ((hi & 0xff) << 24) | (((hi >> 8) & 0xff) << 16) | (((hi >> 16) & 0xff) << 8) | (hi >> 24);
    block[10] = 0x80000000u;
    for (int k = 11; k < 15; k++) block[k] = 0;
    block[15] = 40 * 8;
    sha256_compress(s, block);
    store_trunc254(out + 32 * i, s);
}
