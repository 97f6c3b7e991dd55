//! Known-answer values of the emulation (also listed in docs/porep-emulation.md §12), so a
//! reimplementation can check itself and a change to the construction cannot go unnoticed.

use rust_core::gpu::cpu::CpuBackend;
use rust_core::porep::c2::seal_commit_phase2;
use rust_core::porep::graph::Graph;
use rust_core::porep::ids::{porep_challenge, replica_id};
use rust_core::porep::{c1, pc1, pc2};
use rust_core::Cancel;
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn empty_2k_sector_known_answers() {
    let (prover, ticket, seed) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let g = Graph::new(2048);
    let dir = std::env::temp_dir().join(format!("ss-kat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("unsealed"), [0u8; 2048]).unwrap();
    let cache = dir.join("cache");
    let p1 = pc1::seal_pre_commit_phase1(
        2048,
        &cache,
        &dir.join("unsealed"),
        &prover,
        1,
        &ticket,
        &[],
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
    let c1o = c1::seal_commit_phase1(
        2048,
        &cache,
        &dir.join("sealed"),
        &prover,
        1,
        &ticket,
        &seed,
        &[],
        &comm_r,
        &comm_d,
        &Cancel::default(),
    )
    .unwrap();
    let proof = seal_commit_phase2(&c1o, &prover, 1, &CpuBackend, &Cancel::default()).unwrap();
    let rid = replica_id(2048, &prover, 1, &ticket, &comm_d);
    let challenges: Vec<u64> = (0..2)
        .map(|j| porep_challenge(&rid, &seed, j, 64))
        .collect();
    let got = format!(
        "graph_seed {}\nparents(5) {:?}\nparents(63) {:?}\nreplica_id {}\nchallenges {:?}\ncomm_d {}\ncomm_r {}\nproof_sha256 {}",
        hex(g.seed()),
        g.parents(5),
        g.parents(63),
        hex(&rid),
        challenges,
        hex(&comm_d),
        hex(&comm_r),
        hex(&Sha256::digest(&proof)),
    );
    println!("{got}");
    let want = include_str!("porep_kat_2k.txt");
    assert_eq!(got.trim(), want.trim());
    std::fs::remove_dir_all(&dir).unwrap();
}
