//! Instructions per fr32 block, for callgrind (docs/benchmarks.md, issue 20): pads then unpads
//! `MiB` padded (default 64, above the 32 MiB streaming threshold) once, on one thread, so that
//! the kernels' inclusive instruction counts divide by the printed block count:
//!
//! ```text
//! cargo build --release --example fr32_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/fr32.cg target/release/examples/fr32_instructions
//! callgrind_annotate --inclusive=yes /tmp/fr32.cg | grep -E 'fr32::avx2::(pad|unpad) '
//! ```

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let blocks = (mib << 20) / 128;
    let input: Vec<u8> = (0..blocks * 127).map(|i| (i * 131 % 251) as u8).collect();
    let mut padded = vec![0u8; blocks * 128];
    let mut back = vec![0u8; blocks * 127];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    one.install(|| {
        rust_core::fr32::pad_into(&input, &mut padded).expect("pad");
        rust_core::fr32::unpad_into(&padded, &mut back).expect("unpad");
    });
    assert!(back == input, "unpad does not invert pad");
    println!("{blocks} blocks padded and unpadded");
}
