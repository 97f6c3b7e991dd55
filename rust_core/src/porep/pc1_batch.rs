//! PC1 of several sectors of one size as one call (issue 20): each sector's tree_d and pieces
//! check in turn, then their layers labeled together on one core, and what happens when one
//! sector of a running batch is stopped.
//!
//! A stopped sector leaves the batch without costing the others their work. If the running step
//! works on it, the step is interrupted (within the labels' cancel interval), the stopped
//! sector's files are removed and its layers' memory freed, the caller is told
//! ([`LaneStops::on_stopped`]), and the others resume at the layer they were labeling, their
//! previous layer read back from the file this call wrote whole
//! ([`load_layer`](crate::porep::labels::load_layer)). They lose the part of one layer done since
//! its start, not the layers before it. A sector the running step does not work on (waiting for
//! its group, or done) is taken out by the step's watcher thread without interrupting anyone.
//! Resumed sectors are regrouped by how far they got, so a batch of 8 (AVX-512VL lanes) goes on
//! as SHA-NI groups: memory is never more than the remaining sectors' two layers each, which is
//! what the caller still has reserved for them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::cancel::{Cancel, Scratch};
use crate::error::{Error, Result};
use crate::hash::Node;
use crate::porep::files;
use crate::porep::labels::{label_lanes_from, label_layers_from};
use crate::porep::labels_vl8::{self, label_vl8_into};
use crate::porep::params::SectorParams;
use crate::porep::pc1::{prepare, Pc1Input, Phase1Output};

/// Most sectors [`seal_pre_commit_phase1_batch`] labels together: the 8 lanes of the AVX-512VL
/// software kernel ([`labels_vl8`]).
pub const MAX_BATCH: usize = 8;

/// Most sectors the SHA-NI lanes ([`label_lanes_from`]) take at once (more did not pay,
/// docs/benchmarks.md); larger batches on a CPU without AVX-512VL are labeled in groups of this.
pub const MAX_SHANI_LANES: usize = 4;

/// The batch the 8-lane kernel labels, when the CPU has AVX-512VL: only a full one. Its layers
/// are interleaved 8 lanes wide in memory, so a batch of 5-7 would hold 8 sectors' layers while
/// the manager reserved memory for its calls only (3 sectors' two layers too many: 192 GiB at
/// 32 GiB); 5-7 run as SHA-NI groups instead, within what was reserved. (Padded, 5-7 would
/// also beat the groups on speed: docs/benchmarks.md, "PC1 batches".)
pub const MIN_VL8_BATCH: usize = 8;

/// Per-sector stops of a batch ([`seal_pre_commit_phase1_batch_stoppable`]).
pub struct LaneStops<'a> {
    /// One flag per input sector: once set, that sector leaves the batch.
    pub flags: &'a [Cancel],
    /// Called with a stopped sector's index once it is out: its files removed, its memory freed,
    /// nothing of this call touches them any more. Called once per stopped sector, from the
    /// calling thread between two steps of the batch or from the batch's watcher thread while a
    /// step that does not work on that sector runs; it must not block.
    pub on_stopped: &'a (dyn Fn(usize) + Sync),
}

/// How often the watcher of a running step looks at the stop flags (the labels check the
/// interrupt it sets every few milliseconds, so a stop is seen well within 100 ms).
const WATCH_EVERY: Duration = Duration::from_millis(5);

/// PC1 of 1 to [`MAX_BATCH`] sectors of one size as one call, and one phase-1 output blob per
/// sector, in input order. The labeling: 1 sector alone; 2-4 with the SHA-NI lanes; 8 with the
/// AVX-512VL software lanes where the CPU has them; 5-7 (and 8 without AVX-512VL) in groups of
/// up to [`MAX_SHANI_LANES`]. Every file written and every blob is byte for byte what
/// [`seal_pre_commit_phase1`](crate::porep::pc1::seal_pre_commit_phase1) gives for that sector
/// alone. A bad input fails the whole call with an error naming it (`sectors[i] (sector number
/// n): ...`); failed or cancelled, the call removes every file it wrote for every sector.
pub fn seal_pre_commit_phase1_batch(
    sector_size: u64,
    inputs: &[Pc1Input<'_>],
    cancel: &Cancel,
) -> Result<Vec<Vec<u8>>> {
    seal_pre_commit_phase1_batch_using(sector_size, inputs, BatchLanes::Auto, cancel)
}

/// Which lanes label a PC1 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchLanes {
    /// The fastest this CPU has (what [`seal_pre_commit_phase1_batch`] uses).
    Auto,
    /// The SHA-NI lanes only, in groups of up to [`MAX_SHANI_LANES`]: the path of CPUs without
    /// AVX-512VL, forced (for tests and benchmarks).
    ShaNi,
}

/// [`seal_pre_commit_phase1_batch`] with the labeling lanes chosen (same files and blobs either
/// way).
pub fn seal_pre_commit_phase1_batch_using(
    sector_size: u64,
    inputs: &[Pc1Input<'_>],
    lanes: BatchLanes,
    cancel: &Cancel,
) -> Result<Vec<Vec<u8>>> {
    let flags: Vec<Cancel> = inputs.iter().map(|_| Cancel::new()).collect();
    let stops = LaneStops {
        flags: &flags,
        on_stopped: &|_| {},
    };
    seal_pre_commit_phase1_batch_stoppable(sector_size, inputs, lanes, cancel, &stops)?
        .into_iter()
        // None only for a stopped sector, and nothing sets these flags.
        .map(|out| out.ok_or(Error::Cancelled))
        .collect()
}

/// [`seal_pre_commit_phase1_batch_using`] where each sector can also be stopped on its own
/// (`stops`; see the module docs): a stopped sector's entry is None, the others' blobs and files
/// are those of the whole batch. `cancel` still stops everything (every file of every sector
/// removed, [`Error::Cancelled`]).
pub fn seal_pre_commit_phase1_batch_stoppable(
    sector_size: u64,
    inputs: &[Pc1Input<'_>],
    lanes: BatchLanes,
    cancel: &Cancel,
    stops: &LaneStops<'_>,
) -> Result<Vec<Option<Vec<u8>>>> {
    let params = SectorParams::lookup(sector_size)?;
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(Error::invalid(format!(
            "a PC1 batch takes 1 to {MAX_BATCH} sectors, got {}",
            inputs.len()
        )));
    }
    if stops.flags.len() != inputs.len() {
        return Err(Error::invalid(format!(
            "a PC1 batch of {} sectors takes one stop flag per sector, got {}",
            inputs.len(),
            stops.flags.len()
        )));
    }
    for (i, a) in inputs.iter().enumerate() {
        for (j, b) in inputs.iter().enumerate().take(i) {
            if a.cache_dir == b.cache_dir {
                return Err(Error::invalid(format!(
                    "sectors[{i}] (sector number {}): same cache directory {} as sectors[{j}]",
                    a.sector_number,
                    a.cache_dir.display()
                )));
            }
        }
    }
    let shared: Vec<Shared<'_>> = stops
        .flags
        .iter()
        .map(|flag| Shared {
            flag,
            live: AtomicBool::new(true),
            files: Mutex::new(Scratch::new()),
        })
        .collect();
    let mut progress: Vec<Progress> = inputs.iter().map(|_| Progress::default()).collect();
    loop {
        for (i, s) in shared.iter().enumerate() {
            if s.flag.is_cancelled() {
                s.leave(i, stops.on_stopped);
            }
        }
        // Returning drops every sector's `files`: all removed.
        cancel.check()?;
        let Some(step) = next_step(params, &shared, &progress, lanes) else {
            break;
        };
        let interrupt = Cancel::new();
        let watch = Watch {
            interrupt: &interrupt,
            cancel,
            shared: &shared,
            members: step.members(),
            on_stopped: stops.on_stopped,
        };
        match watch.run(|| run_step(params, inputs, &shared, &mut progress, &step, &interrupt))? {
            Ok(()) => {}
            // A sector of the step was stopped (taken out above) or the whole call was
            // (returned above).
            Err(Error::Cancelled) if interrupt.is_cancelled() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(shared
        .into_iter()
        .zip(progress)
        .map(|(s, p)| match (s.live.into_inner(), p.prepared) {
            (true, Some(out)) => {
                s.files
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .keep();
                Some(out.encode())
            }
            _ => None,
        })
        .collect())
}

/// What the batch shares with its watcher thread of each sector: its stop flag, whether it is
/// still in the batch, and the files this call may have written for it (removed when it is
/// stopped or the call fails). A sector is taken out by whoever sees its flag first: the batch
/// between two steps, or the watcher while a step that does not touch the sector runs.
struct Shared<'a> {
    flag: &'a Cancel,
    live: AtomicBool,
    files: Mutex<Scratch>,
}

impl Shared<'_> {
    fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Out of the batch, once: its files removed (renamed away at once, deleted in the
    /// background), then the caller told.
    fn leave(&self, i: usize, on_stopped: &(dyn Fn(usize) + Sync)) {
        if self.live.swap(false, Ordering::AcqRel) {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            drop(std::mem::replace(&mut *files, Scratch::new()));
            drop(files);
            on_stopped(i);
        }
    }

    fn add_file(&self, path: std::path::PathBuf) {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(path);
    }
}

/// What the batch itself tracks of each sector.
#[derive(Default)]
struct Progress {
    /// Its tree_d built and pieces checked.
    prepared: Option<Phase1Output>,
    /// Its layers written whole (where its labeling resumes after an interruption).
    layers_done: u32,
}

/// What a batch does next: one sector's tree_d, or one labeling run of sectors that got
/// equally far.
enum Step {
    Prepare([usize; 1]),
    Vl8(Vec<usize>),
    Group(Vec<usize>),
}

impl Step {
    /// The sectors the step works on (a stop of any other sector does not interrupt it).
    fn members(&self) -> &[usize] {
        match self {
            Step::Prepare(i) => i,
            Step::Vl8(members) | Step::Group(members) => members,
        }
    }
}

fn next_step(
    params: &SectorParams,
    shared: &[Shared<'_>],
    progress: &[Progress],
    lanes: BatchLanes,
) -> Option<Step> {
    let live = || {
        progress
            .iter()
            .enumerate()
            .filter(|&(i, _)| shared[i].is_live())
    };
    if let Some((i, _)) = live().find(|(_, p)| p.prepared.is_none()) {
        return Some(Step::Prepare([i]));
    }
    let layers = params.layers as u32;
    let todo: Vec<(usize, u32)> = live()
        .filter(|(_, p)| p.layers_done < layers)
        .map(|(i, p)| (i, p.layers_done))
        .collect();
    let &(_, from) = todo.first()?;
    if lanes == BatchLanes::Auto
        && todo.len() >= MIN_VL8_BATCH
        && todo.iter().all(|&(_, done)| done == 0)
        && labels_vl8::available()
    {
        return Some(Step::Vl8(todo.into_iter().map(|(i, _)| i).collect()));
    }
    Some(Step::Group(
        todo.into_iter()
            .filter(|&(_, done)| done == from)
            .map(|(i, _)| i)
            .take(MAX_SHANI_LANES)
            .collect(),
    ))
}

fn run_step(
    params: &SectorParams,
    inputs: &[Pc1Input<'_>],
    shared: &[Shared<'_>],
    progress: &mut [Progress],
    step: &Step,
    cancel: &Cancel,
) -> Result<()> {
    let members = match step {
        Step::Prepare([i]) => {
            let input = &inputs[*i];
            // The sector's own files list tree_d; only a stop of this sector (which interrupts
            // this step, never the watcher's business) takes them, so holding the lock is free.
            let mut files = shared[*i].files.lock().unwrap_or_else(|e| e.into_inner());
            let out =
                prepare(params, input, cancel, &mut files).map_err(|e| naming(*i, input, e))?;
            progress[*i].prepared = Some(out);
            return Ok(());
        }
        Step::Vl8(members) | Step::Group(members) => members,
    };
    let first = members.first().map_or(1, |&i| progress[i].layers_done + 1);
    let mut ids: Vec<Node> = Vec::with_capacity(members.len());
    for &i in members {
        let Some(out) = &progress[i].prepared else {
            return Err(Error::invalid(format!(
                "sectors[{i}] labeled before its tree_d"
            )));
        };
        ids.push(out.replica_id);
        for layer in first..=params.layers as u32 {
            shared[i].add_file(files::layer_path(inputs[i].cache_dir, layer));
        }
    }
    let dirs: Vec<&Path> = members.iter().map(|&i| inputs[i].cache_dir).collect();
    let mut done = vec![first - 1; members.len()];
    // The sectors' own `files` list every layer file; this one is only what the runs take.
    let mut run_files = Scratch::new();
    let result = match step {
        Step::Vl8(_) => label_vl8_into(params, &ids, &dirs, cancel, &mut run_files, &mut done),
        _ => label_group_from(
            params,
            &ids,
            &dirs,
            first,
            cancel,
            &mut run_files,
            &mut done,
        ),
    };
    run_files.keep();
    for (&i, done) in members.iter().zip(done) {
        progress[i].layers_done = done;
    }
    result
}

/// Labels 1 to [`MAX_SHANI_LANES`] sectors together from layer `first` (one alone, more with
/// the SHA-NI lanes).
fn label_group_from(
    params: &SectorParams,
    ids: &[Node],
    dirs: &[&Path],
    first: u32,
    cancel: &Cancel,
    scratch: &mut Scratch,
    done: &mut [u32],
) -> Result<()> {
    match (ids, dirs, done) {
        ([id], [dir], [d]) => {
            label_layers_from(params, id, Some(dir), first, cancel, scratch, d).map(|_| ())
        }
        (ids, dirs, done) => match ids.len() {
            2 => group::<2>(params, ids, dirs, first, cancel, scratch, done),
            3 => group::<3>(params, ids, dirs, first, cancel, scratch, done),
            4 => group::<4>(params, ids, dirs, first, cancel, scratch, done),
            n => Err(Error::invalid(format!(
                "a SHA-NI lane group takes 1 to {MAX_SHANI_LANES} sectors, got {n}"
            ))),
        },
    }
}

fn group<const N: usize>(
    params: &SectorParams,
    ids: &[Node],
    dirs: &[&Path],
    first: u32,
    cancel: &Cancel,
    scratch: &mut Scratch,
    done: &mut [u32],
) -> Result<()> {
    match (
        <&[Node; N]>::try_from(ids),
        <[&Path; N]>::try_from(dirs),
        <&mut [u32; N]>::try_from(done),
    ) {
        (Ok(ids), Ok(dirs), Ok(done)) => {
            label_lanes_from(params, ids, dirs, first, cancel, scratch, done)
        }
        _ => Err(Error::invalid(format!(
            "a group of {N} lanes takes {N} ids, directories and counters"
        ))),
    }
}

/// A step's watcher: while the step runs, a thread that sets `interrupt` as soon as `cancel` or
/// the stop flag of a sector of the step (`members`) is set (the labeling checks one flag), and
/// takes out at once any other sector whose flag is set, without interrupting the step.
struct Watch<'w, 'a> {
    interrupt: &'w Cancel,
    cancel: &'w Cancel,
    shared: &'w [Shared<'a>],
    members: &'w [usize],
    on_stopped: &'w (dyn Fn(usize) + Sync),
}

impl Watch<'_, '_> {
    fn run<T>(&self, run: impl FnOnce() -> T) -> Result<T> {
        let finished = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let watcher = std::thread::Builder::new()
                .name("pc1-batch-stops".into())
                .spawn_scoped(scope, || {
                    while !finished.load(Ordering::Acquire) {
                        if self.look() {
                            self.interrupt.cancel();
                            return;
                        }
                        std::thread::park_timeout(WATCH_EVERY);
                    }
                })
                .map_err(|e| Error::io("start the PC1 batch's stop watcher", e))?;
            let out = run();
            finished.store(true, Ordering::Release);
            watcher.thread().unpark();
            Ok(out)
        })
    }

    /// Whether the step must stop; takes out the stopped sectors it does not work on.
    fn look(&self) -> bool {
        if self.cancel.is_cancelled() {
            return true;
        }
        for (i, s) in self.shared.iter().enumerate() {
            if s.is_live() && s.flag.is_cancelled() {
                if self.members.contains(&i) {
                    return true;
                }
                s.leave(i, self.on_stopped);
            }
        }
        false
    }
}

/// Puts which input failed in front of an error's message (a cancellation stays as it is).
fn naming(i: usize, input: &Pc1Input<'_>, e: Error) -> Error {
    let who = format!("sectors[{i}] (sector number {})", input.sector_number);
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{who}: {m}")),
        Error::Io { context, source } => Error::Io {
            context: format!("{who}: {context}"),
            source,
        },
        Error::Cancelled => Error::Cancelled,
    }
}
