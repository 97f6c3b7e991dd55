//! fr32 pad/unpad throughput on a 256 MiB (padded) buffer, one thread and all cores, against
//! memcpy of the same 256 MiB (the memory-bandwidth limit) and against the `fr32` crate of
//! rust-fil-proofs on the same input, all measured in one run. Every output is checked equal to
//! the other implementation's before any timing counts.
//!
//! Run: `cd bench/fr32 && cargo run --release` (optional argument: padded MiB, default 256).

use std::hint::black_box;
use std::io::Read;
use std::time::Instant;

use rayon::prelude::*;
use rust_core::fr32;

/// Rounds of measurements; each operation reports its best round (least disturbed by other load).
const RUNS: usize = 9;
/// Blocks per task when the fr32 crate is run on all cores (8 MiB padded, as rust_core uses).
const CRATE_TASK_BLOCKS: usize = 1 << 16;

/// Seconds the calling thread has run on a CPU (Linux), if known.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// (wall-clock, on-CPU) seconds of one call on the calling thread. On-CPU time leaves out the
/// time the thread waited for a CPU, which on a shared machine is most of the noise; it is only
/// meaningful when the work runs on this thread (the 1-thread figures).
fn time(f: &mut (dyn FnMut() + Send)) -> (f64, f64) {
    let (t, cpu) = (Instant::now(), thread_cpu_secs());
    f();
    let wall = t.elapsed().as_secs_f64();
    let on_cpu = cpu.zip(thread_cpu_secs()).map_or(wall, |(a, b)| b - a);
    (wall, on_cpu)
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn crate_pad(input: &[u8], out: &mut [u8]) {
    let mut reader = ::fr32::Fr32Reader::new(input);
    reader.read_exact(out).expect("fr32 crate pad");
}

fn crate_unpad(padded: &[u8], out: &mut [u8]) {
    let len = out.len();
    let mut target: &mut [u8] = out;
    ::fr32::write_unpadded(padded, &mut target, 0, len).expect("fr32 crate unpad");
}

struct Row {
    name: &'static str,
    secs: f64,
}

fn main() {
    let padded_mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let padded_len = padded_mib << 20;
    let unpadded_len = padded_len / 128 * 127;
    let cores = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");

    let input = pseudo_random(unpadded_len);
    let mut padded = vec![0u8; padded_len];
    let mut out = vec![0u8; padded_len];
    let mut unpadded = vec![0u8; unpadded_len];
    // One output buffer per operation, all written once before timing (no page faults timed).
    let mut out2 = vec![0u8; padded_len];
    let mut out3 = vec![0u8; padded_len];
    let mut unpadded2 = vec![0u8; unpadded_len];
    for buf in [&mut out2, &mut out3, &mut unpadded2] {
        buf.fill(1);
    }

    // Correctness first: both implementations agree, both directions.
    fr32::pad_into(&input, &mut padded).expect("pad");
    crate_pad(&input, &mut out);
    assert!(padded == out, "fr32 crate and rust_core pad differently");
    crate_unpad(&padded, &mut unpadded);
    assert!(
        unpadded == input,
        "fr32 crate unpad does not invert rust_core pad"
    );
    fr32::unpad_into(&padded, &mut unpadded).expect("unpad");
    assert!(unpadded == input, "rust_core unpad does not invert pad");

    let crate_pad_par = |input: &[u8], out: &mut [u8]| {
        input
            .par_chunks(CRATE_TASK_BLOCKS * 127)
            .zip(out.par_chunks_mut(CRATE_TASK_BLOCKS * 128))
            .for_each(|(i, o)| crate_pad(i, o));
    };
    let crate_unpad_par = |padded: &[u8], out: &mut [u8]| {
        padded
            .par_chunks(CRATE_TASK_BLOCKS * 128)
            .zip(out.par_chunks_mut(CRATE_TASK_BLOCKS * 127))
            .for_each(|(p, o)| crate_unpad(p, o));
    };
    crate_pad_par(&input, &mut out);
    assert!(padded == out, "fr32 crate (chunked) pads differently");

    // Rounds interleave the operations, so a change in background load hits all of them alike;
    // each operation keeps its best round.
    let mut rows = Vec::new();
    for threads in [1, cores] {
        let mut best = [f64::INFINITY; 5];
        let mut best_cpu = [f64::INFINITY; 5];
        for _ in 0..RUNS {
            let mut ops: [&mut (dyn FnMut() + Send); 5] = [
                &mut || {
                    if threads == 1 {
                        out.copy_from_slice(black_box(&padded));
                    } else {
                        // One large copy per thread, so each is as fast as the 1-thread one.
                        let part = padded_len.div_ceil(threads);
                        out.par_chunks_mut(part)
                            .zip(padded.par_chunks(part))
                            .for_each(|(o, p)| o.copy_from_slice(p));
                    }
                    black_box(&out);
                },
                &mut || {
                    fr32::pad_into(black_box(&input), &mut out2).expect("pad");
                    black_box(&out2);
                },
                &mut || {
                    fr32::unpad_into(black_box(&padded), &mut unpadded).expect("unpad");
                    black_box(&unpadded);
                },
                &mut || {
                    if threads == 1 {
                        crate_pad(black_box(&input), &mut out3);
                    } else {
                        crate_pad_par(black_box(&input), &mut out3);
                    }
                    black_box(&out3);
                },
                &mut || {
                    if threads == 1 {
                        crate_unpad(black_box(&padded), &mut unpadded2);
                    } else {
                        crate_unpad_par(black_box(&padded), &mut unpadded2);
                    }
                    black_box(&unpadded2);
                },
            ];
            for (i, op) in ops.iter_mut().enumerate() {
                let (wall, cpu) = if threads == 1 {
                    one.install(|| time(op))
                } else {
                    time(op)
                };
                best[i] = best[i].min(wall);
                best_cpu[i] = best_cpu[i].min(cpu);
            }
        }
        let mut measured = vec![(format!("{threads} thread(s), wall clock"), best)];
        if threads == 1 {
            measured.push(("1 thread, on-CPU time".to_string(), best_cpu));
        }
        for (label, [memcpy, ours_pad, ours_unpad, crate_pad_s, crate_unpad_s]) in measured {
            rows.push((
                label,
                memcpy,
                [
                    Row {
                        name: "rust_core pad",
                        secs: ours_pad,
                    },
                    Row {
                        name: "rust_core unpad",
                        secs: ours_unpad,
                    },
                    Row {
                        name: "fr32 crate pad",
                        secs: crate_pad_s,
                    },
                    Row {
                        name: "fr32 crate unpad",
                        secs: crate_unpad_s,
                    },
                ],
            ));
        }
    }

    let gbps = |secs: f64| padded_len as f64 / secs / 1e9;
    println!(
        "fr32 on {padded_mib} MiB padded ({unpadded_len} bytes unpadded), best of {RUNS} runs"
    );
    println!("throughput = padded bytes per second; memcpy copies the same {padded_mib} MiB");
    println!();
    println!("| measured | operation | GB/s | vs memcpy | rust_core vs fr32 crate |");
    println!("|---|---|---|---|---|");
    for (label, memcpy, ops) in &rows {
        println!("| {label} | memcpy | {:.2} | 1.00 | |", gbps(*memcpy));
        for (i, op) in ops.iter().enumerate() {
            let versus = if i < 2 {
                format!("{:.2}x", ops[i + 2].secs / op.secs)
            } else {
                String::new()
            };
            println!(
                "| {label} | {} | {:.2} | {:.2} | {versus} |",
                op.name,
                gbps(op.secs),
                memcpy / op.secs
            );
        }
    }
}
