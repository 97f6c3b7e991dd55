//! A 2 KiB sector through the real proofs, end to end: AddPiece, PC1, PC2, C1, C2 (a real
//! Groth16 proof), verify_seal and its refusals, unseal, Window PoSt over two sectors and its
//! failure once a challenged sealed byte is corrupted, Winning PoSt.
//!
//! Groth16 parameters are generated locally (random, not the network's) into
//! $SECTORSTORAGE_FIL_PARAMS or ~/.cache/sectorstorage/filecoin-params, and reused by later runs.
//! One test function: the library reads its settings (parameter cache) once per process.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use filecoin_proofs_api::seal as api;
use filecoin_proofs_api::{PieceInfo, SectorId, UnpaddedBytesAmount};
use rust_filecoin::error::Error;
use rust_filecoin::params::{self, Circuit};
use rust_filecoin::post::{self, PostKind};
use rust_filecoin::seal::{self, Bytes32};
use rust_filecoin::sizes;

const SIZE: u64 = 2048;
const PROVER: Bytes32 = [7; 32];
const TICKET: Bytes32 = [2; 32];
const SEED: Bytes32 = [3; 32];

fn param_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("SECTORSTORAGE_FIL_PARAMS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache/sectorstorage/filecoin-params")
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!("[timing] {what}: {:.3} s", start.elapsed().as_secs_f64());
    out
}

struct Sealed {
    number: u64,
    data: Vec<u8>,
    comm_r: Bytes32,
    comm_d: Bytes32,
    sealed: PathBuf,
    cache: PathBuf,
}

/// AddPiece to PC2 for one full-sector piece; checks commD and that PC1/PC2 on the library
/// directly give the same commR.
fn seal_sector(dir: &Path, number: u64) -> (Sealed, Vec<(u64, Bytes32)>) {
    let data = pseudo_random(2032, number);
    let piece = dir.join(format!("piece-{number}"));
    fs::write(&piece, &data).unwrap();
    let unsealed = dir.join(format!("unsealed-{number}"));
    let sealed = dir.join(format!("sealed-{number}"));
    let cache = dir.join(format!("cache-{number}"));
    let (padded, comm_p) = timed("add_piece", || {
        seal::add_piece(SIZE, &piece, &unsealed, 2032, &[]).unwrap()
    });
    assert_eq!(padded, 2048);
    assert_eq!(fs::metadata(&unsealed).unwrap().len(), 2048);
    let pieces = vec![(padded, comm_p)];
    let p1 = timed("pc1", || {
        seal::pre_commit_phase1(
            SIZE, &cache, &unsealed, &sealed, PROVER, number, TICKET, &pieces,
        )
        .unwrap()
    });
    assert_eq!(&p1[..4], b"FCP1");
    let (comm_r, comm_d) = timed("pc2", || {
        seal::pre_commit_phase2(&p1, &cache, &sealed).unwrap()
    });
    // One piece filling the sector: commD is its commP.
    assert_eq!(comm_d, comm_p);

    // The library called directly, on its own copies, gives the same commR.
    let direct_sealed = dir.join(format!("direct-sealed-{number}"));
    let direct_cache = dir.join(format!("direct-cache-{number}"));
    fs::create_dir_all(&direct_cache).unwrap();
    fs::File::create(&direct_sealed).unwrap();
    let proof = sizes::seal_proof(SIZE).unwrap();
    let infos = [PieceInfo::new(comm_p, UnpaddedBytesAmount(2032)).unwrap()];
    let direct_p1 = api::seal_pre_commit_phase1(
        proof,
        &direct_cache,
        &unsealed,
        &direct_sealed,
        PROVER,
        SectorId::from(number),
        TICKET,
        &infos,
    )
    .unwrap();
    let direct = api::seal_pre_commit_phase2(direct_p1, &direct_cache, &direct_sealed).unwrap();
    assert_eq!(direct.comm_r, comm_r);
    assert_eq!(direct.comm_d, comm_d);
    assert_eq!(
        fs::read(&direct_sealed).unwrap(),
        fs::read(&sealed).unwrap()
    );
    (
        Sealed {
            number,
            data,
            comm_r,
            comm_d,
            sealed,
            cache,
        },
        pieces,
    )
}

#[test]
fn sector_2kib_end_to_end() {
    let cache_dir = param_cache();
    let parents = cache_dir.join("parents");
    params::configure(Some(&cache_dir), Some(&parents), SIZE).unwrap();
    let seal_proof = sizes::seal_proof(SIZE).unwrap();
    let window = sizes::window_post_proof(SIZE).unwrap();
    let winning = sizes::winning_post_proof(SIZE).unwrap();
    for circuit in [
        Circuit::Seal(seal_proof),
        Circuit::Post(window),
        Circuit::Post(winning),
    ] {
        let took = params::ensure(circuit, true).unwrap();
        eprintln!(
            "[timing] parameters {}: {}",
            circuit.name(),
            took.map_or("cached".to_string(), |d| format!(
                "generated in {:.1} s",
                d.as_secs_f64()
            ))
        );
        assert!(circuit.params_path().unwrap().exists());
        assert!(circuit.verifying_key_path().unwrap().exists());
    }
    // 8 MiB may not be generated under this policy: a one-line error naming the file and size
    // (unless a previous run or the operator put the file there).
    let big = Circuit::Seal(sizes::seal_proof(8 << 20).unwrap());
    if !big.params_path().unwrap().exists() {
        let err = params::ensure(big, true).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::MissingParameters { .. }), "{msg}");
        assert!(
            msg.contains(&big.params_path().unwrap().display().to_string())
                && msg.contains("8 MiB"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let (a, pieces) = seal_sector(tmp.path(), 1);

    let c1 = timed("c1", || {
        seal::commit_phase1(
            SIZE, &a.cache, &a.sealed, PROVER, a.number, TICKET, SEED, &pieces, a.comm_r, a.comm_d,
        )
        .unwrap()
    });
    let proof = timed("c2", || seal::commit_phase2(&c1, PROVER, a.number).unwrap());
    let raw = seal::raw_seal_proof(&proof).unwrap();
    assert_eq!(raw.len(), 192 * usize::from(seal_proof.partitions()));
    let verify = |comm_r: Bytes32, seed: Bytes32, proof: &[u8]| {
        seal::verify_seal(
            SIZE, comm_r, a.comm_d, PROVER, a.number, TICKET, seed, proof,
        )
        .unwrap()
    };
    assert!(timed("verify_seal", || verify(a.comm_r, SEED, &proof)));
    // Each byte of the Groth16 proof matters, and so do the seed and comm_r.
    for i in [6, 6 + 50, 6 + 100, proof.len() - 1] {
        let mut bad = proof.clone();
        bad[i] ^= 0x01;
        assert!(
            !verify(a.comm_r, SEED, &bad),
            "flipped byte {i} still verifies"
        );
    }
    assert!(!verify(a.comm_r, [4; 32], &proof));
    let mut wrong_r = a.comm_r;
    wrong_r[0] ^= 1;
    assert!(!verify(wrong_r, SEED, &proof));
    assert!(!verify(a.comm_r, SEED, &proof[..proof.len() - 1]));
    // An emulated backend's proof is a backend mismatch, not "invalid".
    let mut emulated = b"SSPF\x01\x00".to_vec();
    emulated.extend_from_slice(raw);
    let err = seal::verify_seal(
        SIZE, a.comm_r, a.comm_d, PROVER, a.number, TICKET, SEED, &emulated,
    )
    .unwrap_err();
    assert!(matches!(err, Error::BackendMismatch { .. }), "{err}");

    // Unseal gives the piece back.
    let out = tmp.path().join("unsealed-out");
    let n = timed("unseal", || {
        seal::unseal_range(
            SIZE, &a.cache, &a.sealed, &out, PROVER, a.number, a.comm_d, TICKET, 0, 2032,
        )
        .unwrap()
    });
    assert_eq!(n, 2032);
    assert_eq!(fs::read(&out).unwrap(), a.data);

    // Window PoSt over two sectors (after clear_cache, which keeps what PoSt reads).
    let (b, _) = seal_sector(tmp.path(), 2);
    seal::clear_cache(&a.cache).unwrap();
    seal::clear_cache(&b.cache).unwrap();
    let randomness: Bytes32 = [9; 32];
    let proving: Vec<post::ProvingSector> = [&a, &b]
        .iter()
        .map(|s| (s.number, s.comm_r, s.sealed.clone(), s.cache.clone()))
        .collect();
    let public: Vec<post::PublicSector> = [&a, &b].iter().map(|s| (s.number, s.comm_r)).collect();
    let wpost = timed("window_post generate (2 sectors)", || {
        post::generate(PostKind::Window, SIZE, randomness, PROVER, &proving).unwrap()
    });
    assert!(timed("window_post verify", || {
        post::verify(PostKind::Window, SIZE, randomness, PROVER, &public, &wpost).unwrap()
    }));
    assert!(!post::verify(PostKind::Window, SIZE, [10; 32], PROVER, &public, &wpost).unwrap());
    let mut swapped = public.clone();
    swapped[1].1 = a.comm_r;
    assert!(!post::verify(PostKind::Window, SIZE, randomness, PROVER, &swapped, &wpost).unwrap());

    // Winning PoSt: the challenged sector out of the two.
    let picked = post::winning_post_sector_challenge(SIZE, randomness, PROVER, 2).unwrap();
    assert!(!picked.is_empty() && picked.iter().all(|i| *i < 2));
    let chosen = &proving[picked[0] as usize];
    let chosen_public = &public[picked[0] as usize];
    let win = timed("winning_post generate", || {
        post::generate(
            PostKind::Winning,
            SIZE,
            randomness,
            PROVER,
            std::slice::from_ref(chosen),
        )
        .unwrap()
    });
    assert!(post::verify(
        PostKind::Winning,
        SIZE,
        randomness,
        PROVER,
        std::slice::from_ref(chosen_public),
        &win
    )
    .unwrap());

    // Corrupt a byte of sector b's replica at a leaf the Window PoSt challenges: proving fails,
    // naming it faulty.
    let challenges =
        post::sector_challenges(PostKind::Window, SIZE, randomness, PROVER, &[b.number]).unwrap();
    let leaf = challenges[&b.number][0] % (SIZE / 32);
    let mut bytes = fs::read(&b.sealed).unwrap();
    bytes[(leaf * 32) as usize] ^= 0x01;
    fs::write(&b.sealed, &bytes).unwrap();
    let err = post::generate(PostKind::Window, SIZE, randomness, PROVER, &proving).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("faulty"), "{err}");
    // The fault check names b, and only b, with the same randomness.
    let faults = rust_filecoin::faults::check_provable(SIZE, PROVER, &proving, randomness).unwrap();
    assert_eq!(faults[&a.number], None);
    assert!(
        faults[&b.number]
            .as_deref()
            .is_some_and(|r| r.starts_with("corrupt:")),
        "{faults:?}"
    );
}
