//! The GPU path proven on a machine with a CUDA device (issue 20): one sector's PC2 and C2 run
//! on the CPU backend and on the CUDA backend from the same PC1 output, every file the two PC2s
//! wrote compared byte for byte (sealed file, tree_c, tree_r_last, p_aux), both proofs verified
//! and compared, and the step times printed as a table with the card's name, ready for
//! docs/benchmarks.md.
//!
//! `cargo run --release --features cuda --example gpu_check -- [--size 512MiB|8MiB|2KiB]
//! [--workdir DIR] [--device N] [--cpu-only]`
//!
//! Exit status: 0 when everything matched, 1 on a mismatch, 2 when no CUDA device is visible
//! (`--cpu-only` then runs the CPU backend twice: a smoke test of this program on any machine).
//! `scripts/gpu_check.sh` builds it with the CUDA kernels' test binary into a bundle for the
//! device machine, which has no network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rust_core::gpu::cpu::CpuBackend;
use rust_core::gpu::{self, Backend};
use rust_core::porep::c2::{seal_commit_phase2, verify_seal, SealPublic};
use rust_core::porep::params::SectorParams;
use rust_core::porep::pieces::Piece;
use rust_core::porep::{binary_tree, c1, pc1, pc2};
use rust_core::Cancel;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn parse_size(s: &str) -> u64 {
    match s {
        "2KiB" => 2048,
        "8MiB" => 8 << 20,
        "512MiB" => 512 << 20,
        other => panic!("--size: 2KiB, 8MiB or 512MiB, not {other}"),
    }
}

/// Every regular file under `dir`, by name relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| PathBuf::from(p.file_name().expect("name")))
        .collect();
    out.sort();
    out
}

fn same_file(a: &Path, b: &Path) -> bool {
    std::fs::read(a).expect("read") == std::fs::read(b).expect("read")
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size = parse_size(&arg(&args, "--size").unwrap_or_else(|| "512MiB".into()));
    let ordinal: usize = arg(&args, "--device").map_or(0, |d| d.parse().expect("--device N"));
    let cpu_only = args.iter().any(|a| a == "--cpu-only");
    let workdir = PathBuf::from(
        arg(&args, "--workdir")
            .unwrap_or_else(|| std::env::temp_dir().join("gpu_check").display().to_string()),
    );
    let params = SectorParams::lookup(size).expect("sector size");

    let devices = gpu::devices();
    for d in &devices {
        println!(
            "CUDA device {}: {} ({} MiB)",
            d.ordinal,
            d.name,
            d.memory_bytes >> 20
        );
    }
    let (other, card): (Arc<dyn Backend>, String) = match devices
        .iter()
        .find(|d| d.ordinal == ordinal)
    {
        Some(d) => (
            gpu::select(&format!("cuda:{ordinal}")).expect("CUDA backend"),
            d.name.clone(),
        ),
        None if cpu_only => (Arc::new(CpuBackend), "none (--cpu-only: CPU twice)".into()),
        None => {
            eprintln!("no CUDA device {ordinal} visible (devices: {}); --cpu-only runs the CPU backend twice", devices.len());
            std::process::exit(2);
        }
    };

    let _ = std::fs::remove_dir_all(&workdir);
    let (cache_cpu, cache_gpu) = (workdir.join("cache-cpu"), workdir.join("cache-gpu"));
    std::fs::create_dir_all(&cache_cpu).expect("workdir");
    std::fs::create_dir_all(&cache_gpu).expect("workdir");
    let unsealed = workdir.join("unsealed");
    let mut data = vec![[0u8; 32]; params.nodes() as usize];
    for (i, n) in data.iter_mut().enumerate() {
        *n = rust_core::porep::ids::hash_parts_trunc254(&[b"gpu-check", &(i as u64).to_le_bytes()]);
    }
    std::fs::write(&unsealed, data.as_flattened()).expect("write unsealed");
    let pieces = [Piece {
        padded_size: size,
        comm_p: binary_tree::root(data),
    }];
    let (prover, ticket, seed) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let never = Cancel::default();

    let t = Instant::now();
    let p1 = pc1::seal_pre_commit_phase1(
        size, &cache_cpu, &unsealed, &prover, 1, &ticket, &pieces, &never,
    )
    .expect("pc1");
    let pc1_s = secs(t);
    for name in files(&cache_cpu) {
        std::fs::copy(cache_cpu.join(&name), cache_gpu.join(&name)).expect("copy PC1's files");
    }

    let (sealed_cpu, sealed_gpu) = (workdir.join("sealed-cpu"), workdir.join("sealed-gpu"));
    let t = Instant::now();
    let (comm_r, comm_d) =
        pc2::seal_pre_commit_phase2(&p1, &cache_cpu, &sealed_cpu, &CpuBackend, &never)
            .expect("pc2 cpu");
    let pc2_cpu = secs(t);
    let t = Instant::now();
    let (comm_r_gpu, comm_d_gpu) =
        pc2::seal_pre_commit_phase2(&p1, &cache_gpu, &sealed_gpu, other.as_ref(), &never)
            .expect("pc2 gpu");
    let pc2_gpu = secs(t);

    let mut mismatches = Vec::new();
    if (comm_r, comm_d) != (comm_r_gpu, comm_d_gpu) {
        mismatches.push("comm_r/comm_d".to_string());
    }
    if !same_file(&sealed_cpu, &sealed_gpu) {
        mismatches.push("sealed file".into());
    }
    let names = files(&cache_cpu);
    if names != files(&cache_gpu) {
        mismatches.push(format!(
            "cache file names: {:?} vs {:?}",
            names,
            files(&cache_gpu)
        ));
    }
    for name in &names {
        if cache_gpu.join(name).is_file()
            && !same_file(&cache_cpu.join(name), &cache_gpu.join(name))
        {
            mismatches.push(format!("cache file {}", name.display()));
        }
    }

    let t = Instant::now();
    let c1o = c1::seal_commit_phase1(
        size,
        &cache_cpu,
        &sealed_cpu,
        &prover,
        1,
        &ticket,
        &seed,
        &pieces,
        &comm_r,
        &comm_d,
        &never,
    )
    .expect("c1");
    let c1_s = secs(t);
    let t = Instant::now();
    let proof_cpu = seal_commit_phase2(&c1o, &prover, 1, &CpuBackend, &never).expect("c2 cpu");
    let c2_cpu = secs(t);
    let t = Instant::now();
    let proof_gpu = seal_commit_phase2(&c1o, &prover, 1, other.as_ref(), &never).expect("c2 gpu");
    let c2_gpu = secs(t);
    let public = SealPublic {
        sector_size: size,
        comm_r: &comm_r,
        comm_d: &comm_d,
        prover_id: &prover,
        sector_number: 1,
        ticket: &ticket,
        seed: &seed,
    };
    for (which, proof) in [("CPU", &proof_cpu), ("GPU", &proof_gpu)] {
        if !verify_seal(&public, proof).expect("verify") {
            mismatches.push(format!("the {which} proof does not verify"));
        }
    }
    if proof_cpu != proof_gpu {
        mismatches.push("C2 proofs differ".into());
    }

    println!("\ncard: {card}; sector {size} bytes; PC1 (CPU) {pc1_s:.2} s, C1 (CPU) {c1_s:.2} s");
    println!("| step | CPU backend (s) | CUDA backend (s) | CPU / CUDA |\n|---|---|---|---|");
    println!(
        "| PC2 | {pc2_cpu:.2} | {pc2_gpu:.2} | {:.2}x |",
        pc2_cpu / pc2_gpu
    );
    println!(
        "| C2 | {c2_cpu:.2} | {c2_gpu:.2} | {:.2}x |",
        c2_cpu / c2_gpu
    );
    let compared = names.len() + 1;
    if mismatches.is_empty() {
        println!("byte for byte equal: the sealed file and {} cache files; both proofs verify and are equal", compared - 1);
        let _ = std::fs::remove_dir_all(&workdir);
    } else {
        println!(
            "MISMATCH: {mismatches:?} (files kept in {})",
            workdir.display()
        );
        std::process::exit(1);
    }
}
