//! PoRep emulation benchmark: labeling rate against the SHA-256 compression limit, scaling over
//! cores, a full PC1/PC2/C1/C2/verify run of one sector with wall time and peak memory, and 32 GiB
//! figures extrapolated from the measured rates.
//!
//! `cargo run --release --example bench_porep -- [--size 8MiB|512MiB] [--workdir DIR] [--labeling-only | --pc1-batch-only | --vl8-only | --pc1-stop-only [--sectors N]] [--with-8]`
//!
//! Also PC1 of 2 and of 8 sectors as single calls against one batch call (`--pc1-batch-only`:
//! that alone; the 8-sector batch above 8 MiB only with `--with-8`). Figures over wall clock and
//! over on-CPU time: the machine may be shared. `--vl8-only`: the limit, one sector, 8 sectors on
//! the AVX-512VL lanes and that kernel alone, nothing else (a quick look at `labels_vl8`).
//! `--pc1-stop-only`: what stopping one sector of a running batch of N (default 4) costs the
//! others, resumed against restarted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rust_core::gpu::cpu::CpuBackend;
use rust_core::hash::Node;
use rust_core::porep::c2::{seal_commit_phase2, verify_seal, SealPublic};
use rust_core::porep::graph::Graph;
use rust_core::porep::labels::{
    label_layer, label_layer_lanes, label_layer_with_producer, zeroed_layer, LabelHasher,
    LaneHashers,
};
use rust_core::porep::labels_vl8::{self, label_layer_vl8, Node8, Vl8Hashers};
use rust_core::porep::params::SectorParams;
use rust_core::porep::parents_cache::{self, ParentsStream};
use rust_core::porep::pieces::Piece;
use rust_core::porep::{binary_tree, c1, pc1, pc2};
use rust_core::Cancel;
use sha2::digest::generic_array::{typenum::U64, GenericArray};

/// Compressions per label of a node with parents (64 + 37·32 bytes, padded).
const COMPRESSIONS_PER_LABEL: f64 = 20.0;

/// On-CPU seconds of this process, all threads (`CLOCK_PROCESS_CPUTIME_ID`): on a shared machine, the
/// time the work itself ran, without the time other processes held the core.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A rate over wall-clock time and over on-CPU time of the process.
#[derive(Clone, Copy, Default)]
struct Rate {
    wall: f64,
    cpu: f64,
}

impl Rate {
    fn measure(work: f64, f: impl FnOnce()) -> Self {
        let (start, cpu0) = (Instant::now(), cpu_secs());
        f();
        Self {
            wall: work / start.elapsed().as_secs_f64(),
            cpu: work / (cpu_secs() - cpu0),
        }
    }

    fn max(self, o: Self) -> Self {
        Self {
            wall: self.wall.max(o.wall),
            cpu: self.cpu.max(o.cpu),
        }
    }
}

/// The single-stream SHA-256 limit (`sha2::compress256`, SHA-NI where the CPU has it), in
/// compressions per second of wall clock and of on-CPU time, over about one second.
fn sha_limit_wall_cpu() -> (f64, f64) {
    let blocks = vec![GenericArray::<u8, U64>::default(); 1024];
    let mut state = [0u32; 8];
    let (start, cpu0) = (Instant::now(), cpu_secs());
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        sha2::compress256(&mut state, &blocks);
        n += blocks.len() as u64;
    }
    std::hint::black_box(state);
    (
        n as f64 / start.elapsed().as_secs_f64(),
        n as f64 / (cpu_secs() - cpu0),
    )
}

/// Labels layer 2 of 8 sectors of `size` at once on one core with the AVX-512VL software lanes
/// (`label_layer_vl8`, lane-interleaved layers); total labels per second.
fn label_rate_vl8(size: u64) -> Rate {
    let graph = Graph::new(size);
    let cache = parents_cache::ensure(&graph, size, &Cancel::default()).expect("parents cache");
    let nodes = graph.nodes() as usize;
    let mut prev =
        rust_core::porep::labels::zeroed_cancellable(nodes, Node8::default(), &Cancel::default())
            .expect("layer");
    for (i, n) in prev.iter_mut().enumerate() {
        for l in 0..labels_vl8::LANES {
            n.set_lane(
                l,
                &rust_core::porep::ids::hash_parts_trunc254(&[
                    &[l as u8],
                    &(i as u64).to_le_bytes(),
                ]),
            );
        }
    }
    let mut out =
        rust_core::porep::labels::zeroed_cancellable(nodes, Node8::default(), &Cancel::default())
            .expect("layer");
    let ids: [Node; labels_vl8::LANES] = std::array::from_fn(|l| [l as u8 + 20; 32]);
    let mut hashers = Vl8Hashers::new(&ids);
    let mut stream = ParentsStream::open(&cache, graph.nodes()).expect("stream");
    let rate = Rate::measure((labels_vl8::LANES * nodes) as f64, || {
        label_layer_vl8(
            &mut hashers,
            2,
            &mut stream,
            Some(&prev),
            &mut out,
            &Cancel::default(),
        )
        .expect("label");
    });
    std::hint::black_box(&out);
    rate
}

/// The 8-lane kernel alone (parents in L1, no stream): total labels per second.
fn kernel_rate_vl8() -> Rate {
    let ids: [Node; labels_vl8::LANES] = std::array::from_fn(|l| [l as u8 + 20; 32]);
    let mut hashers = Vl8Hashers::new(&ids);
    let parents: [Node8; 14] = std::array::from_fn(|k| {
        let mut n = Node8::default();
        for l in 0..labels_vl8::LANES {
            n.set_lane(
                l,
                &rust_core::porep::ids::hash_parts_trunc254(&[&[k as u8, l as u8]]),
            );
        }
        n
    });
    let count = 200_000u64;
    Rate::measure((labels_vl8::LANES as u64 * count) as f64, || {
        std::hint::black_box(labels_vl8::kernel_only(&mut hashers, &parents, count));
    })
}

/// Labels layer 2 of a sector of `size` (layer 1 given as random labels), single-threaded, or
/// with a parent-producer thread (`producer`: one hashing core + one producer core).
fn label_rate(size: u64, replica: u8) -> f64 {
    label_rate_with(size, replica, false).wall
}

fn label_rate_with(size: u64, replica: u8, producer: bool) -> Rate {
    let graph = Graph::new(size);
    let cache = parents_cache::ensure(&graph, size, &Cancel::default()).expect("parents cache");
    let nodes = graph.nodes() as usize;
    let mut prev = zeroed_layer(nodes);
    for (i, p) in prev.iter_mut().enumerate() {
        *p = rust_core::porep::ids::hash_parts_trunc254(&[&(i as u64).to_le_bytes()]);
    }
    let mut out = zeroed_layer(nodes);
    let mut hasher = LabelHasher::new(&[replica; 32]);
    let mut stream = ParentsStream::open(&cache, graph.nodes()).expect("stream");
    let rate = Rate::measure(nodes as f64, || {
        if producer {
            label_layer_with_producer(
                &mut hasher,
                2,
                &mut stream,
                &prev,
                &mut out,
                &Cancel::default(),
            )
            .expect("label");
        } else {
            label_layer(
                &mut hasher,
                2,
                &mut stream,
                Some(&prev),
                &mut out,
                &Cancel::default(),
            )
            .expect("label");
        }
    });
    std::hint::black_box(&out);
    rate
}

/// Labels layer 2 of `N` sectors of `size` at once on one core (`label_layer_lanes`: their SHA-256
/// rounds interleaved); total labels per second.
fn label_rate_lanes<const N: usize>(size: u64) -> f64 {
    let graph = Graph::new(size);
    let cache = parents_cache::ensure(&graph, size, &Cancel::default()).expect("parents cache");
    let nodes = graph.nodes() as usize;
    let prev: [Vec<Node>; N] = std::array::from_fn(|l| {
        let mut layer = zeroed_layer(nodes);
        for (i, p) in layer.iter_mut().enumerate() {
            *p = rust_core::porep::ids::hash_parts_trunc254(&[
                &[l as u8],
                &(i as u64).to_le_bytes(),
            ]);
        }
        layer
    });
    let mut outs: [Vec<Node>; N] = std::array::from_fn(|_| zeroed_layer(nodes));
    let ids: [Node; N] = std::array::from_fn(|l| [l as u8 + 20; 32]);
    let mut hashers = LaneHashers::new(&ids);
    let mut stream = ParentsStream::open(&cache, graph.nodes()).expect("stream");
    let prev_refs = prev.each_ref().map(|p| &p[..]);
    let mut out_refs = outs.each_mut().map(|o| &mut o[..]);
    let start = Instant::now();
    label_layer_lanes(
        &mut hashers,
        2,
        &mut stream,
        Some(prev_refs),
        &mut out_refs,
        &Cancel::default(),
    )
    .expect("label");
    std::hint::black_box(&outs);
    (N * nodes) as f64 / start.elapsed().as_secs_f64()
}

/// PC1 of `n` sectors of `size` as `n` single calls, then as one batch call
/// (`seal_pre_commit_phase1_batch`: tree_d of each, then their labeling interleaved on one core:
/// SHA-NI lanes for 2-4, the AVX-512VL 8-lane kernel for 5-8 where the CPU has it), `rounds`
/// times interleaved; the best total labels per second of each (every layer of every sector over
/// the whole PC1's time, tree_d and the layer writes included), over wall clock and over the
/// process's on-CPU time (tree_d runs on every core: the on-CPU figure counts all of it).
fn pc1_batch_rates(size: u64, workdir: &std::path::Path, rounds: usize, n: usize) -> (Rate, Rate) {
    let params = SectorParams::lookup(size).expect("size");
    let dir = workdir.join("pc1-batch");
    let inputs = batch_files(size, &dir, n);
    let labels = (n as u64 * params.layers as u64 * params.nodes()) as f64;
    let clear = || {
        for (_, cache, _) in &inputs {
            let _ = std::fs::remove_dir_all(cache);
        }
    };
    let (mut single, mut batch) = (Rate::default(), Rate::default());
    for _ in 0..rounds {
        clear();
        let one_by_one = Rate::measure(labels, || {
            for (k, (unsealed, cache, pieces)) in inputs.iter().enumerate() {
                pc1::seal_pre_commit_phase1(
                    size,
                    cache,
                    unsealed,
                    &[1; 32],
                    k as u64,
                    &[2; 32],
                    pieces,
                    &Cancel::default(),
                )
                .expect("pc1");
            }
        });
        single = single.max(one_by_one);
        clear();
        let batch_inputs = batch_inputs(&inputs);
        let together = Rate::measure(labels, || {
            pc1::seal_pre_commit_phase1_batch(size, &batch_inputs, &Cancel::default())
                .expect("pc1 batch");
        });
        batch = batch.max(together);
    }
    let _ = std::fs::remove_dir_all(&dir);
    (single, batch)
}

/// `n` unsealed files of `size` in a fresh `dir` (different data each) with their one piece,
/// and a cache directory name each: (unsealed, cache, pieces).
fn batch_files(size: u64, dir: &std::path::Path, n: usize) -> Vec<(PathBuf, PathBuf, Vec<Piece>)> {
    let params = SectorParams::lookup(size).expect("size");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("workdir");
    let mut inputs = Vec::new();
    for k in 0..n as u8 {
        let mut data = vec![[0u8; 32]; params.nodes() as usize];
        for (i, n) in data.iter_mut().enumerate() {
            *n = rust_core::porep::ids::hash_parts_trunc254(&[&[k], &(i as u64).to_le_bytes()]);
        }
        let path = dir.join(format!("unsealed-{k}"));
        std::fs::write(&path, data.as_flattened()).expect("write unsealed");
        let piece = Piece {
            padded_size: size,
            comm_p: binary_tree::root(data),
        };
        inputs.push((path, dir.join(format!("cache-{k}")), vec![piece]));
    }
    inputs
}

fn batch_inputs(files: &[(PathBuf, PathBuf, Vec<Piece>)]) -> Vec<pc1::Pc1Input<'_>> {
    files
        .iter()
        .enumerate()
        .map(|(k, (unsealed, cache, pieces))| pc1::Pc1Input {
            cache_dir: cache,
            unsealed_path: unsealed,
            prover_id: [1; 32],
            sector_number: k as u64,
            ticket: [2; 32],
            pieces,
        })
        .collect()
}

/// What a stop of one sector of a running batch costs the others (`--pc1-stop-only`): sector 0
/// of `n` is stopped once every sector's layer `layers / 2` (at least 1) is written; the others
/// resume there. Printed: the time from the stop to the end of the call, against a batch of the
/// `n - 1` others from the start (what the batch did before it could resume: restart without
/// the stopped sector).
fn print_pc1_stop(size: u64, workdir: &std::path::Path, n: usize) {
    let params = SectorParams::lookup(size).expect("size");
    let at = (params.layers as u32 / 2).max(1);
    let dir = workdir.join("pc1-stop");
    let files = batch_files(size, &dir, n);
    let inputs = batch_inputs(&files);
    let flags: Vec<Cancel> = (0..n).map(|_| Cancel::new()).collect();
    let stops = pc1::LaneStops {
        flags: &flags,
        on_stopped: &|_| {},
    };
    let layer = |k: usize| rust_core::porep::files::layer_path(&files[k].1, at);
    let whole = |k: usize| std::fs::metadata(layer(k)).is_ok_and(|m| m.len() == size);
    let (stopped_at, cpu_at) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while !(0..n).all(whole) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let t = (Instant::now(), cpu_secs());
            flags[0].cancel();
            t
        });
        let outs = pc1::seal_pre_commit_phase1_batch_stoppable(
            size,
            &inputs,
            pc1::BatchLanes::Auto,
            &Cancel::default(),
            &stops,
        )
        .expect("pc1 batch");
        assert!(
            outs[0].is_none(),
            "the batch ended before the stop: use a bigger sector"
        );
        watcher.join().expect("watcher")
    });
    let (resumed, resumed_cpu) = (stopped_at.elapsed().as_secs_f64(), cpu_secs() - cpu_at);
    for (_, cache, _) in &files {
        let _ = std::fs::remove_dir_all(cache);
    }
    let (start, cpu0) = (Instant::now(), cpu_secs());
    pc1::seal_pre_commit_phase1_batch(size, &inputs[1..], &Cancel::default()).expect("pc1 batch");
    let (restart, restart_cpu) = (start.elapsed().as_secs_f64(), cpu_secs() - cpu0);
    println!(
        "PC1 batch of {n} sectors of {} MiB ({} layers), sector 0 stopped after layer {at}: the others done {resumed:.2} s ({resumed_cpu:.2} s on-CPU) after the stop, resumed at layer {}; a restart of the {} from layer 1 takes {restart:.2} s ({restart_cpu:.2} s on-CPU): {:.2}x the time left (on-CPU {:.2}x)",
        size >> 20,
        params.layers,
        at + 1,
        n - 1,
        restart / resumed,
        restart_cpu / resumed_cpu
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The PC1 batch lines: 2 sectors, and 8 (the AVX-512VL kernel where the CPU has it) up to
/// 8 MiB or with `with_8` (8 × 512 MiB sectors need ~8 GiB of memory and ~12 GiB of disk).
fn print_pc1_batch(size: u64, workdir: &std::path::Path, with_8: bool) {
    // 512 MiB sectors take minutes per round on a small machine: one round there.
    let rounds = if size <= 8 << 20 { 3 } else { 1 };
    let mut counts = vec![2];
    if with_8 || size <= 8 << 20 {
        counts.push(8);
    }
    for n in counts {
        let (single, batch) = pc1_batch_rates(size, workdir, rounds, n);
        let how = if n >= pc1::MIN_VL8_BATCH && labels_vl8::available() {
            "AVX-512VL 8 lanes"
        } else {
            "SHA-NI lanes"
        };
        for (clock, one, all) in [
            ("wall clock", single.wall, batch.wall),
            ("on-CPU", single.cpu, batch.cpu),
        ] {
            println!(
                "PC1, {n} sectors of {} MiB, whole PC1 on 1 core, {clock}: {n} single calls {:.3} M labels/s total, one batch call ({how}) {:.3} M labels/s total = {:.2}x (best of {rounds})",
                size >> 20,
                one / 1e6,
                all / 1e6,
                all / one
            );
        }
    }
}

/// The 8-sector AVX-512VL line: total labels/s against the single-stream limit and one sector
/// labeled alone, each over wall clock and over on-CPU time (all measured interleaved).
fn print_vl8(limit: Rate, single: Rate, vl8: Rate) {
    let kernel = if labels_vl8::available() {
        "AVX-512VL software lanes"
    } else {
        "no AVX-512VL on this CPU: the portable path"
    };
    for (clock, l, one, v) in [
        ("wall clock", limit.wall, single.wall, vl8.wall),
        ("on-CPU", limit.cpu, single.cpu, vl8.cpu),
    ] {
        println!(
            "labeling, 8 sectors interleaved on 1 core ({kernel}), 8 MiB layers, {clock}: {:.3} M labels/s total = {:.2}x the limit ({:.2} M compressions/s), {:.2}x one sector alone ({:.3} M labels/s = {:.2}x the limit) (best of 3)",
            v / 1e6,
            v * COMPRESSIONS_PER_LABEL / l,
            l / 1e6,
            v / one,
            one / 1e6,
            one * COMPRESSIONS_PER_LABEL / l
        );
    }
}

/// The 8-lane kernel alone against the limit, and the share of it the 8 MiB layer reaches.
fn print_vl8_kernel(limit: Rate, vl8: Rate, kernel: Rate) {
    println!(
        "labeling, the 8-lane kernel alone (parents in L1, no stream), on-CPU: {:.3} M labels/s = {:.2}x the limit; the 8 MiB layer reaches {:.0}% of it (best of 3)",
        kernel.cpu / 1e6,
        kernel.cpu * COMPRESSIONS_PER_LABEL / limit.cpu,
        100.0 * vl8.cpu / kernel.cpu
    );
}

fn peak_rss_reset() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn parse_size(s: &str) -> u64 {
    match s.to_ascii_lowercase().as_str() {
        "2kib" | "2048" => 2048,
        "8mib" => 8 << 20,
        "512mib" => 512 << 20,
        other => other.parse().expect("size: 2KiB, 8MiB, 512MiB or bytes"),
    }
}

struct Phase {
    name: &'static str,
    secs: f64,
    peak_mib: f64,
}

fn timed<T>(phases: &mut Vec<Phase>, name: &'static str, f: impl FnOnce() -> T) -> T {
    peak_rss_reset();
    let start = Instant::now();
    let out = f();
    phases.push(Phase {
        name,
        secs: start.elapsed().as_secs_f64(),
        peak_mib: peak_rss_mib(),
    });
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let size = arg("--size").map_or(8 << 20, |s| parse_size(&s));
    let workdir = arg("--workdir").map_or_else(
        || std::env::temp_dir().join(format!("ss-bench-porep-{}", std::process::id())),
        PathBuf::from,
    );
    let params = SectorParams::lookup(size).expect("size");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("# PoRep emulation benchmark (sector {size} bytes, {cores} cores)");
    if args.iter().any(|a| a == "--pc1-stop-only") {
        let n = arg("--sectors").map_or(4, |s| s.parse().expect("--sectors N"));
        print_pc1_stop(size, &workdir, n);
        let _ = std::fs::remove_dir_all(&workdir);
        return;
    }
    if args.iter().any(|a| a == "--pc1-batch-only") {
        print_pc1_batch(size, &workdir, args.iter().any(|a| a == "--with-8"));
        let _ = std::fs::remove_dir_all(&workdir);
        return;
    }
    // The machine may be shared: measure the limit and the labeling rate interleaved, three
    // times, and keep the best of each, so both see the same conditions.
    let mut label_sizes = vec![8u64 << 20];
    if size > 8 << 20 {
        label_sizes.push(size);
    }
    let mut limit: f64 = 0.0;
    let mut best = vec![0.0f64; label_sizes.len()];
    let mut best_producer = 0.0f64;
    let mut best_lanes = [0.0f64; 3];
    let largest = label_sizes.last().copied().unwrap_or(size);
    let (mut limit_r, mut single_r, mut vl8_r) =
        (Rate::default(), Rate::default(), Rate::default());
    let mut kernel_r = Rate::default();
    let vl8_only = args.iter().any(|a| a == "--vl8-only");
    for _ in 0..3 {
        let (wall, cpu) = sha_limit_wall_cpu();
        limit_r = limit_r.max(Rate { wall, cpu });
        limit = limit.max(wall);
        single_r = single_r.max(label_rate_with(8 << 20, 1, false));
        vl8_r = vl8_r.max(label_rate_vl8(8 << 20));
        kernel_r = kernel_r.max(kernel_rate_vl8());
        if vl8_only {
            continue;
        }
        for (b, &label_size) in best.iter_mut().zip(&label_sizes) {
            *b = b.max(label_rate(label_size, 1));
        }
        if cores > 1 {
            best_producer = best_producer.max(label_rate_with(largest, 1, true).wall);
        }
        best_lanes[0] = best_lanes[0].max(label_rate_lanes::<2>(8 << 20));
        best_lanes[1] = best_lanes[1].max(label_rate_lanes::<3>(8 << 20));
        best_lanes[2] = best_lanes[2].max(label_rate_lanes::<4>(8 << 20));
    }
    if vl8_only {
        print_vl8(limit_r, single_r, vl8_r);
        print_vl8_kernel(limit_r, vl8_r, kernel_r);
        return;
    }
    println!(
        "sha256 limit, 1 core: {:.2} M compressions/s (best of 3)",
        limit / 1e6
    );
    for (rate, label_size) in best.iter().zip(&label_sizes) {
        let comp = rate * COMPRESSIONS_PER_LABEL;
        println!(
            "labeling, 1 core, {} MiB layer: {:.3} M labels/s = {:.2} M compressions/s = {:.2}x the limit (best of 3)",
            label_size >> 20,
            rate / 1e6,
            comp / 1e6,
            comp / limit
        );
    }
    for (n, rate) in [2, 3, 4].iter().zip(best_lanes) {
        let comp = rate * COMPRESSIONS_PER_LABEL;
        println!(
            "labeling, {n} sectors interleaved on 1 core, 8 MiB layers: {:.3} M labels/s total = {:.2} M compressions/s = {:.2}x the limit (best of 3)",
            rate / 1e6,
            comp / 1e6,
            comp / limit
        );
    }
    print_vl8(limit_r, single_r, vl8_r);
    print_vl8_kernel(limit_r, vl8_r, kernel_r);
    if cores > 1 {
        let comp = best_producer * COMPRESSIONS_PER_LABEL;
        println!(
            "labeling, 1 hashing core + 1 parent-producer core, {} MiB layer: {:.3} M labels/s = {:.2} M compressions/s = {:.2}x the one-core limit (best of 3; two cores, not a one-core figure)",
            largest >> 20,
            best_producer / 1e6,
            comp / 1e6,
            comp / limit
        );
    }
    let mut one_core = 0.0;
    for k in 1..=cores {
        let rates: Vec<f64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..k)
                .map(|t| s.spawn(move || label_rate(8 << 20, t as u8 + 10)))
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let total: f64 = rates.iter().sum();
        if k == 1 {
            one_core = total;
        }
        println!(
            "labeling, {k} sector(s) in parallel on {k} core(s), 8 MiB layers: {:.3} M labels/s total = {:.2}x one core",
            total / 1e6,
            total / one_core
        );
    }

    if args.iter().any(|a| a == "--labeling-only") {
        return;
    }
    print_pc1_batch(size, &workdir, args.iter().any(|a| a == "--with-8"));

    // Full pipeline.
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir).expect("workdir");
    let unsealed = workdir.join("unsealed");
    let sealed = workdir.join("sealed");
    let cache = workdir.join("cache");
    let mut data = vec![[0u8; 32]; params.nodes() as usize];
    for (i, n) in data.iter_mut().enumerate() {
        *n = rust_core::porep::ids::hash_parts_trunc254(&[b"data", &(i as u64).to_le_bytes()]);
    }
    std::fs::write(&unsealed, data.as_flattened()).expect("write unsealed");
    let comm_p = binary_tree::root(data);
    let pieces = [Piece {
        padded_size: size,
        comm_p,
    }];
    let (prover, ticket, seed) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let mut phases = Vec::new();
    let p1 = timed(&mut phases, "PC1", || {
        pc1::seal_pre_commit_phase1(
            size,
            &cache,
            &unsealed,
            &prover,
            1,
            &ticket,
            &pieces,
            &Cancel::default(),
        )
        .expect("pc1")
    });
    let (comm_r, comm_d) = timed(&mut phases, "PC2", || {
        pc2::seal_pre_commit_phase2(&p1, &cache, &sealed, &CpuBackend, &Cancel::default())
            .expect("pc2")
    });
    let c1o = timed(&mut phases, "C1", || {
        c1::seal_commit_phase1(
            size,
            &cache,
            &sealed,
            &prover,
            1,
            &ticket,
            &seed,
            &pieces,
            &comm_r,
            &comm_d,
            &Cancel::default(),
        )
        .expect("c1")
    });
    let proof = timed(&mut phases, "C2", || {
        seal_commit_phase2(&c1o, &prover, 1, &CpuBackend, &Cancel::default()).expect("c2")
    });
    let ok = timed(&mut phases, "verify", || {
        let public = SealPublic {
            sector_size: size,
            comm_r: &comm_r,
            comm_d: &comm_d,
            prover_id: &prover,
            sector_number: 1,
            ticket: &ticket,
            seed: &seed,
        };
        verify_seal(&public, &proof).expect("verify")
    });
    assert!(ok, "proof must verify");
    println!("\n| step | wall time (s) | peak RSS (MiB) |\n|---|---|---|");
    for p in &phases {
        println!("| {} | {:.2} | {:.0} |", p.name, p.secs, p.peak_mib);
    }
    println!(
        "proof: {} bytes, C1 output: {} bytes",
        proof.len(),
        c1o.len()
    );

    // Extrapolation to 32 GiB from the measured rates.
    let p32 = SectorParams::lookup(32 << 30).expect("32G");
    let secs = |name: &str| {
        phases
            .iter()
            .find(|p| p.name == name)
            .map_or(0.0, |p| p.secs)
    };
    let pc1_label_rate = (params.layers as u64 * params.nodes()) as f64 / secs("PC1");
    let pc1_32 = (p32.layers as u64 * p32.nodes()) as f64 / pc1_label_rate;
    // PC2 compressions: columns (ceil((32L + 9) / 64) each), tree_c and tree_r_last (2 per node).
    let pc2_comp = |p: &SectorParams| {
        let n = p.nodes() as f64;
        n * ((32 * p.layers + 9) as f64 / 64.0).ceil() + 4.0 * n
    };
    let pc2_32 = secs("PC2") * pc2_comp(p32) / pc2_comp(params);
    let c2_32 =
        secs("C2") * (1u64 << p32.c2_witness_log2) as f64 / (1u64 << params.c2_witness_log2) as f64;
    println!("\n32 GiB extrapolated on this machine ({cores} cores, CPU backend):");
    println!(
        "PC1 {:.1} h (one sector per core, sequential labeling), PC2 {:.1} min, C2 {:.1} min",
        pc1_32 / 3600.0,
        pc2_32 / 60.0,
        c2_32 / 60.0
    );
    let _ = std::fs::remove_dir_all(&workdir);
}
