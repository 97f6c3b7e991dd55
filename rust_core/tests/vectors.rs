//! Every known-answer vector in `../shared/vectors/` (vectors.json, hashhash_zero.txt, the Go
//! math/rand sample and the tables of README.md that the JSON does not repeat), through the pure
//! Rust API. The directory sits beside the repository checkout: `rust_core/../../shared/vectors`.

#[path = "support/go_math_rand.rs"]
mod go_math_rand;

use std::path::PathBuf;

use go_math_rand::GoRand;
use rust_core::commitments::commd::unsealed_commitment;
use rust_core::commitments::commp::{piece_commitment, PieceHasher};
use rust_core::commitments::piece_cid::{
    commp_from_cid, piece_cid, piece_cid_v2, piece_cid_v2_info,
};
use rust_core::commitments::piece_size::{
    padded_to_unpadded, unpadded_size_for, unpadded_to_padded, PieceTarget,
};
use rust_core::commitments::zero_comm::zero_piece_commitment;
use rust_core::fr32;
use rust_core::hash::{hash_block, hash_pair, Node};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    assert!(
        dir.join("vectors.json").is_file(),
        "known-answer vectors not found at {}: the repository must be checked out with ../shared \
         beside it",
        dir.display()
    );
    dir
}

fn read_text(name: &str) -> String {
    let path = vectors_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn vectors() -> Value {
    serde_json::from_str(&read_text("vectors.json")).expect("vectors.json is valid JSON")
}

fn section(name: &str) -> Vec<Value> {
    let v = vectors()[name].as_array().cloned().unwrap_or_default();
    assert!(!v.is_empty(), "vectors.json has no section {name}");
    v
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn node(s: &str) -> Node {
    unhex(s).try_into().expect("32-byte hex")
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The 127-byte piece of go-commp-utils TestZeroPadding.
fn biggest_cat() -> Vec<u8> {
    let mut d = b"i am the biggest cat, what do you think about that".to_vec();
    d.resize(127, 0);
    d
}

/// 127 × 00, 127 × 01, 127 × 02, 127 × 03 (go-fil-commcid TestMultihashes).
fn four_runs() -> Vec<u8> {
    (0u8..4)
        .flat_map(|b| std::iter::repeat(b).take(127))
        .collect()
}

/// How a commP vector's payload is built, from its `input` recipe.
enum Payload {
    Bytes(Vec<u8>),
    GoRand(u64),
    /// The input is not reproducible offline; only its CID is checked.
    Unavailable,
}

fn commp_payload(v: &Value) -> Payload {
    let input = str_of(v, "input");
    let len = u64_of(v, "payload_size") as usize;
    if v["reverified_here"] == Value::Bool(false) {
        return Payload::Unavailable;
    }
    let bytes = if input.starts_with("payload_size bytes of 0x00") {
        vec![0u8; len]
    } else if input.contains("i am the biggest cat") {
        biggest_cat()
    } else if input.contains("bytes of 'a'") {
        vec![b'a'; len]
    } else if input.contains("Go rand") {
        return Payload::GoRand(len as u64);
    } else if input.starts_with("127 bytes 0x00, 127 bytes 0x01") {
        four_runs()
    } else if input.starts_with("the 508 bytes above followed by 508 zero bytes") {
        let mut d = four_runs();
        d.resize(1016, 0);
        d
    } else if input.contains("*already-padded* bytes: 0x01 then") {
        // fr32 of (01, 00, …) is (01, 00, …): the padded data of the test is this payload's.
        let mut d = vec![0u8; len];
        d[0] = 1;
        d
    } else {
        panic!("unknown commP input recipe: {input}");
    };
    assert_eq!(bytes.len(), len, "{input}");
    Payload::Bytes(bytes)
}

fn go_rand_commp(payload: u64, target: PieceTarget) -> Node {
    let mut rng = GoRand::new(0x7e5);
    let mut hasher = PieceHasher::new();
    let mut buf = vec![0u8; 16 << 20];
    let mut left = payload as usize;
    while left > 0 {
        let n = left.min(buf.len());
        rng.read(&mut buf[..n]);
        hasher.update(&buf[..n]).expect("update");
        left -= n;
    }
    hasher.finish(target).expect("finish")
}

fn check_cid(digest: &Node, cid: &str) {
    assert_eq!(piece_cid(digest).expect("cid"), cid);
    assert_eq!(&commp_from_cid(cid).expect("parse"), digest, "{cid}");
}

#[test]
fn zero_piece_commitments() {
    for v in section("zero_piece_commitments") {
        let padded = u64_of(&v, "padded_size");
        let digest = node(str_of(&v, "digest_hex"));
        assert_eq!(
            zero_piece_commitment(padded).expect("zero"),
            digest,
            "{padded}"
        );
        if let Some(unpadded) = v["unpadded_size"].as_u64() {
            assert_eq!(padded_to_unpadded(padded).ok(), Some(unpadded));
            assert_eq!(unpadded_to_padded(unpadded).ok(), Some(padded));
            check_cid(&digest, str_of(&v, "piece_cid_v1"));
        }
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "hashes 256 MiB: run with --release")]
fn zero_piece_commitments_by_hashing_zeros() {
    for v in section("zero_piece_commitments") {
        let Some(unpadded) = v["unpadded_size"].as_u64().filter(|&u| u <= 127 << 21) else {
            continue;
        };
        let zeros = vec![0u8; unpadded as usize];
        let got = piece_commitment(&zeros, PieceTarget::Exact).expect("commP");
        assert_eq!(hex(&got), str_of(&v, "digest_hex"), "{unpadded}");
    }
}

#[test]
fn hashhash_zero_txt() {
    let text = read_text("hashhash_zero.txt");
    let mut rows = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split(',').collect();
        let [payload, padded, cid] = cols[..] else {
            panic!("bad row {line}")
        };
        let (payload, padded): (u64, u64) = (payload.parse().unwrap(), padded.parse().unwrap());
        assert_eq!(
            unpadded_to_padded(unpadded_size_for(payload).unwrap()).ok(),
            Some(padded)
        );
        let digest = piece_commitment(&vec![0u8; payload as usize], PieceTarget::Smallest).unwrap();
        check_cid(&digest, cid);
        rows += 1;
    }
    assert!(rows >= 18, "hashhash_zero.txt has {rows} rows");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "hashes up to 512 MiB: run with --release")]
fn commp_vectors() {
    let mut checked = 0;
    for v in section("commp") {
        let digest = node(str_of(&v, "digest_hex"));
        let padded = u64_of(&v, "padded_size");
        check_cid(&digest, str_of(&v, "piece_cid_v1"));
        let target = PieceTarget::from_size(Some(padded)).unwrap();
        let got = match commp_payload(&v) {
            Payload::Unavailable => continue,
            Payload::GoRand(len) => go_rand_commp(len, target),
            Payload::Bytes(data) => {
                let got = piece_commitment(&data, target).unwrap();
                assert_eq!(
                    piece_commitment(&data, PieceTarget::Smallest).ok(),
                    Some(got)
                );
                got
            }
        };
        assert_eq!(hex(&got), hex(&digest), "{}", str_of(&v, "input"));
        checked += 1;
    }
    assert!(checked >= 29, "only {checked} commP vectors reproduced");
}

#[test]
fn go_math_rand_matches_published_sample() {
    let want = std::fs::read(vectors_dir().join("gomathrand_read_seed0x7e5_first2032.bin"))
        .expect("Go math/rand sample");
    let mut got = vec![0u8; want.len()];
    let mut rng = GoRand::new(0x7e5);
    // Read in uneven pieces: Go's Read carries the unused bytes of each Int63 across calls.
    let (a, b) = got.split_at_mut(1000);
    rng.read(a);
    rng.read(b);
    assert!(
        got == want,
        "Go math/rand stream differs from the published sample"
    );
}

#[test]
fn fr32_vectors() {
    let mut checked = 0;
    for v in section("fr32") {
        let input = unhex(str_of(&v, "input_hex"));
        if let Some(out) = v["padded_hex_128"].as_str() {
            let mut block = input.clone();
            block.resize(127, 0);
            let padded = fr32::pad(&block).unwrap();
            assert_eq!(hex(&padded), out, "{}", str_of(&v, "input"));
            assert_eq!(fr32::unpad(&padded).ok(), Some(block));
        } else {
            // F10: a padded block whose pad bits are set. Lotus ignores them; we reject them
            // unless asked to be lenient.
            let want = unhex(str_of(&v, "unpadded_hex_127"));
            let mut out = vec![0u8; 127];
            fr32::unpad_into_lenient(&input, &mut out).unwrap();
            assert_eq!(out, want);
            assert!(fr32::unpad(&input).is_err());
        }
        checked += 1;
    }
    assert_eq!(checked, 10);
}

#[test]
fn tree_node_vectors() {
    let leaf1: Node = {
        let mut n = [0u8; 32];
        n[0] = 1;
        n
    };
    let zero = [0u8; 32];
    let mut nodes = section("tree_nodes").into_iter();
    let mut next = || node(str_of(&nodes.next().expect("vector"), "node_hex"));
    let mut block = [0u8; 64];
    block[0] = 1;
    let a = next();
    assert_eq!(hash_block(&block), a);
    assert_eq!(hash_pair(&leaf1, &zero), a);
    let b = next();
    assert_eq!(hash_block(&[0u8; 64]), b);
    assert_eq!(hash_pair(&a, &b), next());
}

/// README §6: curio Test8MiB, node 0 of every level of the tree over padded `01 00 …`.
#[test]
fn curio_8mib_tree_levels() {
    let readme = read_text("README.md");
    let table = readme.split("## 6.").nth(1).expect("README §6");
    let mut levels = 0;
    for line in table.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(level), Some(node0)) = (cells.get(1), cells.get(3)) else {
            continue;
        };
        let Ok(level) = level.split(' ').next().unwrap_or("").parse::<u32>() else {
            continue;
        };
        let want = node0.trim_matches('`');
        let got = if level == 0 {
            let mut n = [0u8; 32];
            n[0] = 1;
            n
        } else if level == 1 {
            let mut block = [0u8; 64];
            block[0] = 1;
            hash_block(&block)
        } else {
            let mut data = vec![0u8; 127 << (level - 2)];
            data[0] = 1;
            piece_commitment(&data, PieceTarget::Exact).unwrap()
        };
        assert_eq!(hex(&got), want, "level {level}");
        levels += 1;
    }
    assert_eq!(levels, 19);
}

fn pieces_of(v: &Value) -> Vec<(u64, Node)> {
    v["pieces_in_order"]
        .as_array()
        .expect("pieces")
        .iter()
        .map(|p| {
            let digest = node(str_of(p, "digest_hex"));
            if let Some(cid) = p["piece_cid_v1"].as_str() {
                check_cid(&digest, cid);
            }
            if p["zero_piece"] == Value::Bool(true) {
                assert_eq!(
                    zero_piece_commitment(u64_of(p, "padded_size")).ok(),
                    Some(digest)
                );
            }
            (u64_of(p, "padded_size"), digest)
        })
        .collect()
}

#[test]
fn commd_vectors() {
    for v in section("commd_from_pieces") {
        let pieces = pieces_of(&v);
        let sector = u64_of(&v, "sector_size");
        let want = node(str_of(&v, "commd_hex"));
        assert_eq!(
            unsealed_commitment(sector, &pieces).ok(),
            Some(want),
            "{}",
            v["source"]
        );
        check_cid(&want, str_of(&v, "commd_cid"));
    }
}

#[test]
fn commd_mainnet_sector_without_zero_pieces() {
    // D1's note: the ten real pieces alone aggregate to an 8 GiB root; the zero pieces then lift
    // it to the 32 GiB commD.
    let d1 = section("commd_from_pieces").remove(0);
    let pieces: Vec<(u64, Node)> = pieces_of(&d1).into_iter().take(10).collect();
    let root = unsealed_commitment(8 << 30, &pieces).unwrap();
    assert_eq!(
        piece_cid(&root).unwrap(),
        "baga6ea4seaqez5c7zwfn6rqlhmsjeukdlrhs5ubvh2qlevfjwv3dljnaynifqoi"
    );
    assert_eq!(
        unsealed_commitment(32 << 30, &pieces).ok(),
        Some(node(str_of(&d1, "commd_hex")))
    );
}

#[test]
fn commd_d5_equals_commp_of_sector_bytes() {
    let d5 = section("commd_from_pieces").remove(4);
    assert!(str_of(&d5, "unpadded_sector_bytes").starts_with("A(127) + 889 x 0x00"));
    let mut sector = biggest_cat();
    sector.resize(127 + 889, 0);
    sector.extend(std::iter::repeat(b'a').take(1016));
    let got = piece_commitment(&sector, PieceTarget::Exact).unwrap();
    assert_eq!(hex(&got), str_of(&d5, "commd_hex"));
}

#[test]
fn piece_cid_v2_vectors() {
    let mut rows: Vec<(Vec<u8>, u64, String, String, Node)> = Vec::new();
    for v in section("piece_cid_v2") {
        let payload = u64_of(&v, "payload_size");
        let mut data = four_runs();
        data.resize(payload as usize, 0);
        let digest = node(str_of(&v, "digest_hex"));
        rows.push((
            data,
            payload,
            str_of(&v, "piece_cid_v1").into(),
            str_of(&v, "piece_cid_v2").into(),
            digest,
        ));
    }
    for (data, payload, v1, v2, digest) in rows {
        assert_eq!(
            piece_commitment(&data, PieceTarget::Smallest).ok(),
            Some(digest)
        );
        check_cid(&digest, &v1);
        assert_eq!(piece_cid_v2(&digest, payload).unwrap(), v2);
        let info = piece_cid_v2_info(&v2).unwrap();
        assert_eq!((info.commp, info.payload_size), (digest, payload));
        assert_eq!(
            info.padded_size,
            unpadded_to_padded(unpadded_size_for(payload).unwrap()).unwrap()
        );
        assert_eq!(commp_from_cid(&v2).ok(), Some(digest));
    }
    // README §5 rows not repeated in the JSON: zero pieces of 32 GiB and 64 GiB.
    for (padded, payload, v2) in [
        (
            32u64 << 30,
            34_091_302_912u64,
            "bafkzcibcaapao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
        ),
        (
            64 << 30,
            68_182_605_824,
            "bafkzcibcaap6mqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
        ),
    ] {
        let zero = zero_piece_commitment(padded).unwrap();
        assert_eq!(piece_cid_v2(&zero, payload).unwrap(), v2);
        assert_eq!(piece_cid_v2_info(v2).unwrap().padded_size, padded);
    }
}
