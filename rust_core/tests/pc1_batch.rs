//! PC1 of several sectors as one call (`pc1::seal_pre_commit_phase1_batch`): every file and blob
//! equals the single-sector call's, bad inputs are named, a cancelled batch leaves nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_core::hash::Node;
use rust_core::porep::binary_tree;
use rust_core::porep::pc1::{self, BatchLanes, Pc1Input};
use rust_core::porep::pieces::Piece;
use rust_core::{Cancel, Error};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("ss-pc1-batch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An fr32-valid unsealed file of `size` bytes (different per `salt`) and its one piece.
fn unsealed(dir: &Path, size: u64, salt: u8) -> (PathBuf, Vec<Piece>) {
    let mut d: Vec<u8> = (0..size as usize)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8)
        .collect();
    for node in d.chunks_mut(32) {
        node[31] &= 0x3f;
    }
    let path = dir.join(format!("unsealed-{salt}"));
    std::fs::write(&path, &d).unwrap();
    let leaves: Vec<Node> = d.chunks(32).map(|c| c.try_into().unwrap()).collect();
    let pieces = vec![Piece {
        padded_size: size,
        comm_p: binary_tree::root(leaves),
    }];
    (path, pieces)
}

/// Every file of a directory: name → contents.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                // Trash is deleted in the background: skipped before it is read.
                .filter(|e| {
                    !e.file_name()
                        .to_string_lossy()
                        .starts_with(rust_core::cancel::TRASH_PREFIX)
                })
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Sector {
    unsealed: PathBuf,
    pieces: Vec<Piece>,
    number: u64,
    ticket: [u8; 32],
}

fn sectors(dir: &Path, size: u64, n: usize) -> Vec<Sector> {
    (0..n)
        .map(|k| {
            let (unsealed, pieces) = unsealed(dir, size, k as u8 + 1);
            Sector {
                unsealed,
                pieces,
                number: 100 + k as u64,
                ticket: [k as u8 + 50; 32],
            }
        })
        .collect()
}

fn inputs<'a>(s: &'a [Sector], caches: &'a [PathBuf]) -> Vec<Pc1Input<'a>> {
    s.iter()
        .zip(caches)
        .map(|(s, cache)| Pc1Input {
            cache_dir: cache,
            unsealed_path: &s.unsealed,
            prover_id: [7; 32],
            sector_number: s.number,
            ticket: s.ticket,
            pieces: &s.pieces,
        })
        .collect()
}

/// What the single-sector call writes for `sector` into `cache`: its blob.
fn alone(size: u64, cache: &Path, sector: &Sector) -> Vec<u8> {
    pc1::seal_pre_commit_phase1(
        size,
        cache,
        &sector.unsealed,
        &[7; 32],
        sector.number,
        &sector.ticket,
        &sector.pieces,
        &Cancel::default(),
    )
    .unwrap()
}

fn batch_equals_single(size: u64, n: usize, lanes: BatchLanes) {
    let d = Dir::new(&format!("eq-{size}-{n}-{lanes:?}"));
    let s = sectors(&d.0, size, n);
    let batch_caches: Vec<PathBuf> = (0..n).map(|k| d.0.join(format!("batch-{k}"))).collect();
    let blobs = pc1::seal_pre_commit_phase1_batch_using(
        size,
        &inputs(&s, &batch_caches),
        lanes,
        &Cancel::default(),
    )
    .unwrap();
    assert_eq!(blobs.len(), n);
    for (k, sector) in s.iter().enumerate() {
        let single_cache = d.0.join(format!("single-{k}"));
        let blob = alone(size, &single_cache, sector);
        assert_eq!(blobs[k], blob, "{n} sectors of {size}: blob of sector {k}");
        let (got, want) = (contents(&batch_caches[k]), contents(&single_cache));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{n} sectors of {size}: files of sector {k}"
        );
        for (name, bytes) in &want {
            assert!(
                got[name] == *bytes,
                "{n} sectors of {size}: {name} of sector {k} differs"
            );
        }
    }
    // The sectors really differ (else equal files would prove little).
    for k in 1..n {
        assert_ne!(blobs[k], blobs[k - 1]);
    }
}

#[test]
fn batch_of_one_to_eight_writes_what_single_calls_write() {
    // 8 sectors take the AVX-512VL 8-lane path where the CPU has it, 5-7 the SHA-NI groups of up
    // to 4 (as 8 do when forced: the path of CPUs without AVX-512VL).
    for n in 1..=8 {
        batch_equals_single(2048, n, BatchLanes::Auto);
    }
    for n in [5, 8] {
        batch_equals_single(2048, n, BatchLanes::ShaNi);
    }
    if !cfg!(debug_assertions) {
        batch_equals_single(8 << 20, 2, BatchLanes::Auto);
        batch_equals_single(8 << 20, 8, BatchLanes::Auto);
        batch_equals_single(8 << 20, 6, BatchLanes::Auto);
    }
}

#[test]
fn a_failing_sector_late_in_the_labeling_removes_every_sectors_files() {
    // Sector 5's layer-1 file cannot be created (a directory is in its place): the 8-lane path
    // fails writing layer 1, the SHA-NI groups fail in the second group after the first group
    // wrote all its layers. Either way nothing of any sector stays.
    for lanes in [BatchLanes::Auto, BatchLanes::ShaNi] {
        let d = Dir::new(&format!("late-{lanes:?}"));
        let s = sectors(&d.0, 2048, 6);
        let caches: Vec<PathBuf> = (0..6).map(|k| d.0.join(format!("c{k}"))).collect();
        let blocker = caches[5].join("sc-02-data-layer-1.dat");
        std::fs::create_dir_all(&blocker).unwrap();
        let e = pc1::seal_pre_commit_phase1_batch_using(
            2048,
            &inputs(&s, &caches),
            lanes,
            &Cancel::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{lanes:?}: {e}");
        assert!(e.to_string().contains("sc-02-data-layer-1.dat"), "{e}");
        assert!(rust_core::cancel::wait_trash(Duration::from_secs(30)));
        for c in &caches[..5] {
            assert!(
                contents(c).is_empty(),
                "{lanes:?}: {} kept files",
                c.display()
            );
        }
        // Sector 5: its tree_d is gone too (the blocker itself may be cleared away as well).
        let left: Vec<String> = std::fs::read_dir(&caches[5])
            .map(|it| {
                it.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        !n.starts_with(rust_core::cancel::TRASH_PREFIX)
                            && n != "sc-02-data-layer-1.dat"
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{lanes:?}: sector 5 kept {left:?}");
    }
}

#[test]
fn bad_inputs_are_named_and_leave_no_files() {
    let d = Dir::new("bad");
    let mut s = sectors(&d.0, 2048, 3);
    let caches: Vec<PathBuf> = (0..3).map(|k| d.0.join(format!("c{k}"))).collect();
    // sectors[1]'s piece commitment is wrong.
    s[1].pieces[0].comm_p = [1; 32];
    let e = pc1::seal_pre_commit_phase1_batch(2048, &inputs(&s, &caches), &Cancel::default())
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("sectors[1] (sector number 101): "),
        "{e}"
    );
    assert!(rust_core::cancel::wait_trash(Duration::from_secs(30)));
    for c in &caches {
        assert!(contents(c).is_empty(), "{} kept files", c.display());
    }
    // A missing unsealed file is an I/O error naming the sector and the file.
    let mut s = sectors(&d.0, 2048, 2);
    s[1].unsealed = d.0.join("missing");
    let e = pc1::seal_pre_commit_phase1_batch(2048, &inputs(&s, &caches), &Cancel::default())
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(
        e.to_string().contains("sectors[1] (sector number 101)"),
        "{e}"
    );
    // Two sectors with one cache directory, five sectors, none, an unknown size.
    let same = vec![caches[0].clone(), caches[0].clone()];
    let e = pc1::seal_pre_commit_phase1_batch(2048, &inputs(&s, &same), &Cancel::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sectors[1]") && e.contains("same cache directory"),
        "{e}"
    );
    let nine = sectors(&d.0, 2048, 9);
    let caches9: Vec<PathBuf> = (0..9).map(|k| d.0.join(format!("c{k}"))).collect();
    let e = pc1::seal_pre_commit_phase1_batch(2048, &inputs(&nine, &caches9), &Cancel::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 to 8 sectors, got 9"), "{e}");
    assert!(pc1::seal_pre_commit_phase1_batch(2048, &[], &Cancel::default()).is_err());
    let e = pc1::seal_pre_commit_phase1_batch(4096, &inputs(&s, &caches), &Cancel::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported sector size"), "{e}");
}

#[test]
fn cancelled_batch_removes_every_sectors_files() {
    let d = Dir::new("cancel");
    let s = sectors(&d.0, 2048, 2);
    let caches: Vec<PathBuf> = (0..2).map(|k| d.0.join(format!("c{k}"))).collect();
    let cancel = Cancel::default();
    cancel.cancel();
    let e = pc1::seal_pre_commit_phase1_batch(2048, &inputs(&s, &caches), &cancel).unwrap_err();
    assert!(e.is_cancelled(), "{e}");
    // Cancelled mid-way on a sector big enough to be caught labeling (release builds only: a
    // debug 8 MiB batch takes minutes).
    if !cfg!(debug_assertions) {
        let s = sectors(&d.0, 8 << 20, 2);
        let cancel = Cancel::default();
        let stopper = cancel.cancel_after(Duration::from_millis(300));
        let e =
            pc1::seal_pre_commit_phase1_batch(8 << 20, &inputs(&s, &caches), &cancel).unwrap_err();
        stopper.join().unwrap();
        assert!(e.is_cancelled(), "{e}");
    }
    assert!(rust_core::cancel::wait_trash(Duration::from_secs(30)));
    for c in &caches {
        assert!(contents(c).is_empty(), "{} kept files", c.display());
    }
    // A batch of 8 (the 8-lane path where the CPU has it), cancelled while labeling: stopped
    // within a short time of the cancel, nothing of any sector stays.
    if !cfg!(debug_assertions) {
        let s = sectors(&d.0, 8 << 20, 8);
        let caches: Vec<PathBuf> = (0..8).map(|k| d.0.join(format!("e{k}"))).collect();
        let cancel = Cancel::default();
        let start = std::time::Instant::now();
        let stopper = cancel.cancel_after(Duration::from_millis(1500));
        let e =
            pc1::seal_pre_commit_phase1_batch(8 << 20, &inputs(&s, &caches), &cancel).unwrap_err();
        let took = start.elapsed();
        stopper.join().unwrap();
        assert!(e.is_cancelled(), "{e}");
        assert!(
            took < Duration::from_millis(2500),
            "stopped {took:?} after the start"
        );
        assert!(rust_core::cancel::wait_trash(Duration::from_secs(30)));
        for c in &caches {
            assert!(contents(c).is_empty(), "{} kept files", c.display());
        }
    }
}

/// Modification time and inode of a file (unchanged: not written again).
fn stamp(path: &Path) -> (std::time::SystemTime, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.modified().unwrap(), m.ino())
}

/// What `on_stopped` saw: the index, whether that sector's cache was already empty, and when.
type Seen = std::sync::Mutex<Vec<(usize, bool, std::time::Instant)>>;

/// A batch of `n` 8 MiB sectors (2 layers) where sector `victim` is stopped as soon as the
/// first 4 sectors' layer 1 is written whole: the victim leaves with nothing on disk, the others go on from
/// layer 2 (their layer-1 files are not written again) and end with exactly the single calls'
/// files and blobs.
fn one_sector_stopped_mid_batch(n: usize, victim: usize, lanes: BatchLanes) {
    let size = 8u64 << 20;
    let d = Dir::new(&format!("stop-{n}-{victim}-{lanes:?}"));
    let s = sectors(&d.0, size, n);
    let caches: Vec<PathBuf> = (0..n).map(|k| d.0.join(format!("c{k}"))).collect();
    let flags: Vec<Cancel> = (0..n).map(|_| Cancel::new()).collect();
    let seen = Seen::default();
    let layer1 = |k: usize| caches[k].join("sc-02-data-layer-1.dat");
    let stopped_at = std::sync::Mutex::new(None);
    // The survivors' whole layer-1 files when the stop is told, to show they are not labeled
    // again.
    let stamps = std::sync::Mutex::new(Vec::new());
    let on_stopped = |i: usize| {
        let empty = contents(&caches[i]).is_empty();
        seen.lock()
            .unwrap()
            .push((i, empty, std::time::Instant::now()));
        for k in (0..n).filter(|&k| k != i) {
            if std::fs::metadata(layer1(k)).is_ok_and(|m| m.len() == size) {
                stamps.lock().unwrap().push((k, stamp(&layer1(k))));
            }
        }
    };
    let stops = pc1::LaneStops {
        flags: &flags,
        on_stopped: &on_stopped,
    };
    let outs = std::thread::scope(|scope| {
        scope.spawn(|| loop {
            let whole = |k: usize| std::fs::metadata(layer1(k)).is_ok_and(|m| m.len() == size);
            if (0..n.min(4)).all(whole) {
                *stopped_at.lock().unwrap() = Some(std::time::Instant::now());
                flags[victim].cancel();
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        });
        pc1::seal_pre_commit_phase1_batch_stoppable(
            size,
            &inputs(&s, &caches),
            lanes,
            &Cancel::default(),
            &stops,
        )
        .unwrap()
    });
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 1, "{n}/{lanes:?}: told {seen:?}");
    let (who, empty, when) = seen[0];
    assert_eq!(who, victim);
    assert!(
        empty,
        "{n}/{lanes:?}: the stopped sector still had files when told"
    );
    let latency = when - stopped_at.lock().unwrap().unwrap();
    println!("{n} sectors, {lanes:?}: stopped sector out {latency:?} after its flag");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    assert!(outs[victim].is_none());
    for (k, sector) in s.iter().enumerate() {
        if k == victim {
            continue;
        }
        let single = d.0.join(format!("single-{k}"));
        let blob = alone(size, &single, sector);
        assert_eq!(
            outs[k].as_deref(),
            Some(&blob[..]),
            "{n}/{lanes:?}: blob {k}"
        );
        assert!(
            contents(&caches[k]) == contents(&single),
            "{n}/{lanes:?}: files of {k}"
        );
    }
    let stamps = stamps.into_inner().unwrap();
    assert!(stamps.len() >= n.min(4) - 1, "{n}/{lanes:?}: {stamps:?}");
    for (k, before) in stamps {
        assert_eq!(
            stamp(&layer1(k)),
            before,
            "{n}/{lanes:?}: layer 1 of {k} rewritten"
        );
    }
    assert!(rust_core::cancel::wait_trash(Duration::from_secs(30)));
    assert!(contents(&caches[victim]).is_empty());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release builds only (make test-rust): the stop must land mid-labeling of 8 MiB sectors"
)]
fn a_stopped_sector_leaves_the_batch_and_the_others_resume_where_they_were() {
    one_sector_stopped_mid_batch(3, 1, BatchLanes::Auto);
    one_sector_stopped_mid_batch(2, 0, BatchLanes::Auto);
    // 8: the 8-lane path where the CPU has it (the 7 left go on as SHA-NI groups), then the
    // SHA-NI groups of 4 (the stop lands in the first group; the second starts later).
    one_sector_stopped_mid_batch(8, 3, BatchLanes::Auto);
    one_sector_stopped_mid_batch(8, 2, BatchLanes::ShaNi);
}

#[test]
fn sectors_stopped_before_their_turn_are_told_at_once_and_a_batch_of_all_stopped_ends() {
    let d = Dir::new("stop-early");
    let s = sectors(&d.0, 2048, 3);
    let caches: Vec<PathBuf> = (0..3).map(|k| d.0.join(format!("c{k}"))).collect();
    let flags: Vec<Cancel> = (0..3).map(|_| Cancel::new()).collect();
    flags[2].cancel();
    let seen = std::sync::Mutex::new(Vec::new());
    let on_stopped = |i: usize| seen.lock().unwrap().push(i);
    let stops = pc1::LaneStops {
        flags: &flags,
        on_stopped: &on_stopped,
    };
    let outs = pc1::seal_pre_commit_phase1_batch_stoppable(
        2048,
        &inputs(&s, &caches),
        BatchLanes::Auto,
        &Cancel::default(),
        &stops,
    )
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![2]);
    assert!(outs[0].is_some() && outs[1].is_some() && outs[2].is_none());
    assert!(contents(&caches[2]).is_empty());
    assert!(contents(&caches[0]).contains_key("sc-02-data-layer-2.dat"));
    // Every sector stopped: nothing runs, nothing stays, every one is told.
    let caches: Vec<PathBuf> = (0..3).map(|k| d.0.join(format!("all{k}"))).collect();
    for f in &flags {
        f.cancel();
    }
    seen.lock().unwrap().clear();
    let outs = pc1::seal_pre_commit_phase1_batch_stoppable(
        2048,
        &inputs(&s, &caches),
        BatchLanes::Auto,
        &Cancel::default(),
        &stops,
    )
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    assert!(outs.iter().all(Option::is_none));
    for c in &caches {
        assert!(contents(c).is_empty());
    }
    // The whole call cancelled still removes everything, stopped sectors or not.
    let fresh: Vec<Cancel> = (0..3).map(|_| Cancel::new()).collect();
    fresh[0].cancel();
    let cancel = Cancel::new();
    cancel.cancel();
    let stops = pc1::LaneStops {
        flags: &fresh,
        on_stopped: &on_stopped,
    };
    let e = pc1::seal_pre_commit_phase1_batch_stoppable(
        2048,
        &inputs(&s, &caches),
        BatchLanes::Auto,
        &cancel,
        &stops,
    )
    .unwrap_err();
    assert!(e.is_cancelled());
    // One flag per sector, or a clear error.
    let e = pc1::seal_pre_commit_phase1_batch_stoppable(
        2048,
        &inputs(&s, &caches),
        BatchLanes::Auto,
        &Cancel::new(),
        &pc1::LaneStops {
            flags: &fresh[..2],
            on_stopped: &on_stopped,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("one stop flag per sector, got 2"), "{e}");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release builds only (make test-rust): the stop must land mid-labeling of 8 MiB sectors"
)]
fn a_sector_stopped_while_another_group_labels_is_taken_out_without_interrupting_it() {
    // 8 sectors on the SHA-NI groups: sector 6 (second group, idle) is stopped while the first
    // group labels layer 2. The batch's watcher takes it out at once, without interrupting the
    // first group: it is told from the watcher's thread (an interruption would tell it from the
    // calling thread, between two steps).
    let size = 8u64 << 20;
    let d = Dir::new("stop-idle");
    let s = sectors(&d.0, size, 8);
    let caches: Vec<PathBuf> = (0..8).map(|k| d.0.join(format!("c{k}"))).collect();
    let flags: Vec<Cancel> = (0..8).map(|_| Cancel::new()).collect();
    let seen = std::sync::Mutex::new(Vec::new());
    let on_stopped = |i: usize| {
        let thread = std::thread::current().name().map(str::to_owned);
        seen.lock()
            .unwrap()
            .push((i, thread, contents(&caches[i]).is_empty()));
    };
    let stops = pc1::LaneStops {
        flags: &flags,
        on_stopped: &on_stopped,
    };
    let layer1 = |k: usize| caches[k].join("sc-02-data-layer-1.dat");
    let outs = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !(0..4).all(|k| std::fs::metadata(layer1(k)).is_ok_and(|m| m.len() == size)) {
                std::thread::sleep(Duration::from_millis(1));
            }
            flags[6].cancel();
        });
        pc1::seal_pre_commit_phase1_batch_stoppable(
            size,
            &inputs(&s, &caches),
            BatchLanes::ShaNi,
            &Cancel::default(),
            &stops,
        )
        .unwrap()
    });
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen,
        vec![(6, Some("pc1-batch-stops".to_owned()), true)],
        "told once, by the watcher, with its cache already empty"
    );
    assert!(outs[6].is_none());
    for (k, sector) in s.iter().enumerate().filter(|&(k, _)| k != 6) {
        let single = d.0.join(format!("single-{k}"));
        let blob = alone(size, &single, sector);
        assert_eq!(outs[k].as_deref(), Some(&blob[..]), "blob {k}");
        assert!(contents(&caches[k]) == contents(&single), "files of {k}");
    }
    assert!(rust_core::cancel::wait_trash(Duration::from_secs(30)));
    assert!(contents(&caches[6]).is_empty());
}

/// A single call's blob and files.
type Single = (Vec<u8>, BTreeMap<String, Vec<u8>>);

/// A small deterministic generator for the randomized test (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

#[test]
fn random_stops_at_random_moments_never_touch_the_others() {
    // Stops of random sectors at random moments (during a tree_d, a layer, a layer write, as the
    // call ends, several at once), 2 KiB sectors, SHA-NI groups and the default lanes. Whatever
    // the moment: a sector whose result is None was stopped, told exactly once, and has nothing
    // on disk; every other sector's blob and files are exactly the single call's; a sector never
    // stopped is never told.
    let size = 2048u64;
    let d = Dir::new("random-stops");
    let s = sectors(&d.0, size, 8);
    let singles: Vec<Single> = s
        .iter()
        .enumerate()
        .map(|(k, sector)| {
            let cache = d.0.join(format!("single-{k}"));
            let blob = alone(size, &cache, sector);
            (blob, contents(&cache))
        })
        .collect();
    let mut rng = Lcg(20);
    let rounds = if cfg!(debug_assertions) { 40 } else { 300 };
    let (mut stopped, mut late) = (0, 0);
    for round in 0..rounds {
        let n = 2 + rng.next(7) as usize;
        let lanes = if rng.next(2) == 0 {
            BatchLanes::Auto
        } else {
            BatchLanes::ShaNi
        };
        let caches: Vec<PathBuf> = (0..n).map(|k| d.0.join(format!("r{round}-{k}"))).collect();
        let flags: Vec<Cancel> = (0..n).map(|_| Cancel::new()).collect();
        let told = std::sync::Mutex::new(Vec::new());
        let on_stopped = |i: usize| told.lock().unwrap().push(i);
        let stops = pc1::LaneStops {
            flags: &flags,
            on_stopped: &on_stopped,
        };
        let plan: Vec<(u64, usize)> = (0..1 + rng.next(3))
            .map(|_| (rng.next(4000), rng.next(n as u64) as usize))
            .collect();
        let outs = std::thread::scope(|scope| {
            scope.spawn(|| {
                for &(micros, k) in &plan {
                    std::thread::sleep(Duration::from_micros(micros));
                    flags[k].cancel();
                }
            });
            pc1::seal_pre_commit_phase1_batch_stoppable(
                size,
                &inputs(&s[..n], &caches),
                lanes,
                &Cancel::default(),
                &stops,
            )
            .unwrap()
        });
        let told = told.into_inner().unwrap();
        for (k, out) in outs.iter().enumerate() {
            let times_told = told.iter().filter(|&&i| i == k).count();
            match out {
                None => {
                    stopped += 1;
                    assert!(flags[k].is_cancelled(), "round {round}: {k} left unstopped");
                    assert_eq!(times_told, 1, "round {round}: {k} told {times_told} times");
                    assert!(
                        contents(&caches[k]).is_empty(),
                        "round {round}: stopped {k} kept files"
                    );
                }
                Some(blob) => {
                    late += usize::from(flags[k].is_cancelled());
                    assert_eq!(times_told, 0, "round {round}: {k} told but kept");
                    assert_eq!(*blob, singles[k].0, "round {round} ({lanes:?}): blob {k}");
                    assert!(
                        contents(&caches[k]) == singles[k].1,
                        "round {round} ({lanes:?}): files of {k}"
                    );
                }
            }
        }
    }
    println!("{rounds} rounds: {stopped} sectors stopped mid-batch, {late} stops after their sector was done");
    // The plan reaches every stage only if some stops land mid-batch and some after (timed for
    // release builds, which CI runs).
    if !cfg!(debug_assertions) {
        assert!(
            stopped > rounds / 4 && late > 0,
            "{stopped} stopped, {late} late"
        );
    }
    assert!(rust_core::cancel::wait_trash(Duration::from_secs(30)));
}
