//! PC1 of several sectors of one size as one call (issue 20): each sector's tree_d and pieces
//! check in turn, then their layers labeled together on one core, and what happens when one
//! sector of a running batch is stopped.
//!
//! A stopped sector leaves the batch without costing the others their work: the labeling run is
//! interrupted (within the labels' cancel interval), the stopped sector's files are removed and
//! its layers' memory freed, the caller is told ([`LaneStops::on_stopped`]), and the others
//! resume at the layer they were labeling, their previous layer read back from the file this
//! call wrote whole ([`load_layer`](crate::porep::labels::load_layer)). They lose the part of one layer done since its start, not
//! the layers before it. Resumed sectors are regrouped by how far they got, so a batch of 8
//! (AVX-512VL lanes) goes on as SHA-NI groups: memory is never more than the remaining sectors'
//! two layers each, which is what the caller still has reserved for them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// nothing of this call touches them any more. Called from the calling thread, between two
    /// steps of the batch.
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
    let mut sectors: Vec<Sector<'_>> = inputs
        .iter()
        .zip(stops.flags)
        .map(|(input, flag)| Sector {
            input,
            flag,
            files: Scratch::new(),
            prepared: None,
            layers_done: 0,
            live: true,
        })
        .collect();
    loop {
        for (i, s) in sectors.iter_mut().enumerate() {
            if s.live && s.flag.is_cancelled() {
                s.stop();
                (stops.on_stopped)(i);
            }
        }
        // Returning drops every sector's `files`: all removed.
        cancel.check()?;
        let Some(step) = next_step(params, &sectors, lanes) else {
            break;
        };
        let interrupt = Cancel::new();
        let watched: Vec<&Cancel> = sectors.iter().filter(|s| s.live).map(|s| s.flag).collect();
        match watching(&interrupt, cancel, &watched, || {
            run_step(params, &mut sectors, &step, &interrupt)
        })? {
            Ok(()) => {}
            // A sector was stopped (dropped above) or the whole call was (returned above).
            Err(Error::Cancelled) if interrupt.is_cancelled() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sectors
        .into_iter()
        .map(|s| match (s.live, s.prepared) {
            (true, Some(out)) => {
                s.files.keep();
                Some(out.encode())
            }
            _ => None,
        })
        .collect())
}

/// One sector of a running batch.
struct Sector<'a> {
    input: &'a Pc1Input<'a>,
    flag: &'a Cancel,
    /// Every file this call may have written for the sector: removed when it is stopped or the
    /// call fails.
    files: Scratch,
    /// Its tree_d built and pieces checked.
    prepared: Option<Phase1Output>,
    /// Its layers written whole (where its labeling resumes after an interruption).
    layers_done: u32,
    live: bool,
}

impl Sector<'_> {
    /// Out of the batch: its files removed (renamed away at once, deleted in the background).
    fn stop(&mut self) {
        self.live = false;
        self.prepared = None;
        drop(std::mem::replace(&mut self.files, Scratch::new()));
    }
}

/// What a batch does next: one sector's tree_d, or one labeling run of sectors that got
/// equally far.
enum Step {
    Prepare(usize),
    Vl8(Vec<usize>),
    Group(Vec<usize>),
}

fn next_step(params: &SectorParams, sectors: &[Sector<'_>], lanes: BatchLanes) -> Option<Step> {
    let live = || sectors.iter().enumerate().filter(|(_, s)| s.live);
    if let Some((i, _)) = live().find(|(_, s)| s.prepared.is_none()) {
        return Some(Step::Prepare(i));
    }
    let layers = params.layers as u32;
    let todo: Vec<(usize, u32)> = live()
        .filter(|(_, s)| s.layers_done < layers)
        .map(|(i, s)| (i, s.layers_done))
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
    sectors: &mut [Sector<'_>],
    step: &Step,
    cancel: &Cancel,
) -> Result<()> {
    let members = match step {
        Step::Prepare(i) => {
            let s = &mut sectors[*i];
            let out = prepare(params, s.input, cancel, &mut s.files)
                .map_err(|e| naming(*i, s.input, e))?;
            s.prepared = Some(out);
            return Ok(());
        }
        Step::Vl8(members) | Step::Group(members) => members,
    };
    let first = members.first().map_or(1, |&i| sectors[i].layers_done + 1);
    let mut ids: Vec<Node> = Vec::with_capacity(members.len());
    for &i in members {
        let s = &mut sectors[i];
        let Some(out) = &s.prepared else {
            return Err(Error::invalid(format!(
                "sectors[{i}] labeled before its tree_d"
            )));
        };
        ids.push(out.replica_id);
        for layer in first..=params.layers as u32 {
            s.files.add(files::layer_path(s.input.cache_dir, layer));
        }
    }
    let dirs: Vec<&Path> = members
        .iter()
        .map(|&i| sectors[i].input.cache_dir)
        .collect();
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
        sectors[i].layers_done = done;
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

/// Runs `run` with a watcher thread that sets `interrupt` as soon as `cancel` or any of `flags`
/// is set (the labeling checks one flag; a stop of any sector must interrupt it).
fn watching<T>(
    interrupt: &Cancel,
    cancel: &Cancel,
    flags: &[&Cancel],
    run: impl FnOnce() -> T,
) -> Result<T> {
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = std::thread::Builder::new()
            .name("pc1-batch-stops".into())
            .spawn_scoped(scope, || {
                while !finished.load(Ordering::Acquire) {
                    if cancel.is_cancelled() || flags.iter().any(|f| f.is_cancelled()) {
                        interrupt.cancel();
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
