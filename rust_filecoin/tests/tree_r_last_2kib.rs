//! `layout::tree_r_last_files` against what the library really writes: a 2 KiB sector sealed to
//! PC2 holds exactly the listed tree-r-last files with exactly those sizes, and still does after
//! `clear_cache`. No Groth16 parameters are needed (no C1/C2). Its own test binary: the library
//! reads its settings (the parent cache) once per process.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rust_filecoin::layout;
use rust_filecoin::params;
use rust_filecoin::seal::{self, Bytes32};

const SIZE: u64 = 2048;
const PROVER: Bytes32 = [9; 32];
const TICKET: Bytes32 = [5; 32];

fn param_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("SECTORSTORAGE_FIL_PARAMS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/sectorstorage/filecoin-params")
}

/// `{name: size}` of the cache's files whose name mentions tree-r-last.
fn tree_r_last_on_disk(cache: &Path) -> BTreeMap<String, u64> {
    fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().contains("tree-r-last"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[test]
fn a_sealed_2kib_cache_holds_exactly_the_listed_tree_r_last_files() {
    let cache_dir = param_cache();
    params::configure(Some(&cache_dir), Some(&cache_dir.join("parents")), 0).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data: Vec<u8> = (0..2032u32).map(|i| (i * 7 + 3) as u8).collect();
    let piece = dir.join("piece");
    fs::write(&piece, &data).unwrap();
    let (unsealed, sealed, cache) = (dir.join("unsealed"), dir.join("sealed"), dir.join("cache"));
    let (padded, comm_p) = seal::add_piece(SIZE, &piece, &unsealed, 2032, &[]).unwrap();
    let pieces = [(padded, comm_p)];
    let p1 = seal::pre_commit_phase1(SIZE, &cache, &unsealed, &sealed, PROVER, 3, TICKET, &pieces)
        .unwrap();
    seal::pre_commit_phase2(&p1, &cache, &sealed).unwrap();

    let listed: BTreeMap<String, u64> = layout::tree_r_last_files(SIZE)
        .unwrap()
        .into_iter()
        .collect();
    assert!(!listed.is_empty());
    assert_eq!(tree_r_last_on_disk(&cache), listed);
    seal::clear_cache(&cache).unwrap();
    assert_eq!(tree_r_last_on_disk(&cache), listed);
}
