//! End to end through the Rust API on a 2 KiB sector: seal, verify, tamper, unseal, PoSt.

use std::path::PathBuf;

use rust_core::gpu::cpu::CpuBackend;
use rust_core::hash::Node;
use rust_core::porep::binary_tree;
use rust_core::porep::c2::{seal_commit_phase2, verify_seal, SealPublic};
use rust_core::porep::pieces::Piece;
use rust_core::porep::post::{self, CheckSector, PostKind, ProvingSector, PublicSector};
use rust_core::porep::unseal::{unseal_range, UnsealInputs};
use rust_core::porep::{c1, clear_cache, pc1, pc2};
use rust_core::Cancel;

struct Sealed {
    dir: PathBuf,
    data: Vec<u8>,
    comm_r: Node,
    comm_d: Node,
    proof: Vec<u8>,
}

const PROVER: [u8; 32] = [7; 32];
const TICKET: [u8; 32] = [8; 32];
const SEED: [u8; 32] = [9; 32];

fn padded_data(size: usize, salt: u8) -> Vec<u8> {
    let mut d: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect();
    for node in d.chunks_mut(32) {
        node[31] &= 0x3f;
    }
    d
}

fn seal(name: &str, number: u64) -> Sealed {
    let dir = std::env::temp_dir().join(format!("ss-flow-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = padded_data(2048, number as u8);
    std::fs::write(dir.join("unsealed"), &data).unwrap();
    let leaves: Vec<Node> = data.chunks(32).map(|c| c.try_into().unwrap()).collect();
    let comm_p = binary_tree::root(leaves);
    let pieces = [Piece {
        padded_size: 2048,
        comm_p,
    }];
    let cache = dir.join("cache");
    let p1 = pc1::seal_pre_commit_phase1(
        2048,
        &cache,
        &dir.join("unsealed"),
        &PROVER,
        number,
        &TICKET,
        &pieces,
        &Cancel::default(),
    )
    .unwrap();
    let (comm_r, comm_d) = pc2::seal_pre_commit_phase2(
        &p1,
        &cache,
        &dir.join("sealed"),
        &CpuBackend,
        &Cancel::default(),
    )
    .unwrap();
    assert_eq!(comm_d, comm_p);
    let c1o = c1::seal_commit_phase1(
        2048,
        &cache,
        &dir.join("sealed"),
        &PROVER,
        number,
        &TICKET,
        &SEED,
        &pieces,
        &comm_r,
        &comm_d,
        &Cancel::default(),
    )
    .unwrap();
    let proof = seal_commit_phase2(&c1o, &PROVER, number, &CpuBackend, &Cancel::default()).unwrap();
    Sealed {
        dir,
        data,
        comm_r,
        comm_d,
        proof,
    }
}

fn public<'a>(s: &'a Sealed, number: u64, seed: &'a [u8; 32]) -> SealPublic<'a> {
    SealPublic {
        sector_size: 2048,
        comm_r: &s.comm_r,
        comm_d: &s.comm_d,
        prover_id: &PROVER,
        sector_number: number,
        ticket: &TICKET,
        seed,
    }
}

#[test]
fn seal_verify_tamper_unseal_post() {
    let s = seal("main", 5);
    assert_eq!(
        rust_core::porep::c2::check_seal(&public(&s, 5, &SEED), &s.proof),
        Ok(())
    );
    assert!(verify_seal(&public(&s, 5, &SEED), &s.proof).unwrap());
    assert!(!verify_seal(&public(&s, 6, &SEED), &s.proof).unwrap());
    assert!(!verify_seal(&public(&s, 5, &[1; 32]), &s.proof).unwrap());
    // Every byte of the proof matters.
    for i in 0..s.proof.len() {
        let mut bad = s.proof.clone();
        bad[i] ^= 0x01;
        assert!(
            !verify_seal(&public(&s, 5, &SEED), &bad).unwrap(),
            "byte {i}"
        );
    }
    assert!(!verify_seal(&public(&s, 5, &SEED), &s.proof[..s.proof.len() - 1]).unwrap());

    // Unseal the whole sector and a middle range.
    let cache = s.dir.join("cache");
    let inputs = UnsealInputs {
        sector_size: 2048,
        prover_id: &PROVER,
        sector_number: 5,
        ticket: &TICKET,
        comm_d: &s.comm_d,
    };
    unseal_range(
        &inputs,
        &cache,
        &s.dir.join("sealed"),
        &s.dir.join("out"),
        0,
        2032,
        &Cancel::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.dir.join("out")).unwrap(), s.data);
    unseal_range(
        &inputs,
        &cache,
        &s.dir.join("sealed"),
        &s.dir.join("out2"),
        254,
        508,
        &Cancel::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(s.dir.join("out2")).unwrap()[256..768],
        s.data[256..768]
    );
    let wrong = UnsealInputs {
        sector_number: 6,
        ..inputs
    };
    assert!(unseal_range(
        &wrong,
        &cache,
        &s.dir.join("sealed"),
        &s.dir.join("out3"),
        0,
        2032,
        &Cancel::default(),
    )
    .is_err());

    // PoSt after clear_cache.
    clear_cache(&cache, 2048).unwrap();
    let sector = ProvingSector {
        sector_number: 5,
        comm_r: s.comm_r,
        sealed_path: s.dir.join("sealed"),
        cache_dir: cache.clone(),
    };
    let publics = [PublicSector {
        sector_number: 5,
        comm_r: s.comm_r,
    }];
    let proof = post::generate_post(
        2048,
        PostKind::Window,
        &[3; 32],
        &PROVER,
        std::slice::from_ref(&sector),
        &Cancel::default(),
    )
    .unwrap();
    assert!(
        post::verify_post(2048, PostKind::Window, &[3; 32], &PROVER, &publics, &proof).unwrap()
    );
    // The same proof assembled from the sector's vanilla proof, as the manager does.
    let vanilla = post::generate_single_vanilla_proof(
        2048,
        PostKind::Window,
        &[3; 32],
        &PROVER,
        &sector,
        &Cancel::default(),
    )
    .unwrap();
    assert_eq!(
        post::assemble_post(2048, PostKind::Window, &[&vanilla]).unwrap(),
        proof
    );
    assert!(
        !post::verify_post(2048, PostKind::Window, &[4; 32], &PROVER, &publics, &proof).unwrap()
    );
    assert!(
        !post::verify_post(2048, PostKind::Winning, &[3; 32], &PROVER, &publics, &proof).unwrap()
    );
    let check = |r: Option<&[u8; 32]>| {
        post::check_provable(
            2048,
            &PROVER,
            &[CheckSector {
                sector_number: 5,
                comm_r: Some(s.comm_r),
                sealed_path: s.dir.join("sealed"),
                cache_dir: cache.clone(),
            }],
            r,
            &Cancel::default(),
        )
        .unwrap()
    };
    assert_eq!(check(None), vec![(5, None)]);
    // Corrupt one byte of the replica: every proof over the 2 KiB block fails.
    let mut sealed = std::fs::read(s.dir.join("sealed")).unwrap();
    sealed[1000] ^= 0x04;
    std::fs::write(s.dir.join("sealed"), &sealed).unwrap();
    let proof = post::generate_post(
        2048,
        PostKind::Window,
        &[3; 32],
        &PROVER,
        &[sector],
        &Cancel::default(),
    )
    .unwrap();
    assert!(
        !post::verify_post(2048, PostKind::Window, &[3; 32], &PROVER, &publics, &proof).unwrap()
    );
    let reason = check(None)[0].1.clone().unwrap();
    assert!(reason.contains("corrupt"), "{reason}");
    std::fs::remove_dir_all(&s.dir).unwrap();
}
