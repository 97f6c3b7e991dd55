//! Commitments of all-zero pieces, by padded size, as a table: filling a sector's gaps and tail,
//! and zero-extending a piece, need the root of a zero subtree of every height, and hashing zeros
//! to get them would cost as much as hashing real data (a 32 GiB zero tree is 2^30 hashes).
//!
//! Entry `h` is the root of a tree of `2^h` zero leaves, i.e. padded size `32·2^h`, from 32 B
//! (the zero leaf) to 2^63 B. `zero[h+1] = H(zero[h], zero[h])`; a unit test re-derives the table
//! and `../shared/vectors` checks 32 B … 2 TiB against go-commp-utils' published values.

use crate::error::{Error, Result};
use crate::hash::Node;

/// Number of entries: heights 0 (32 B) to 58 (2^63 B).
pub const HEIGHTS: usize = 59;

/// Parses 64 hex digits at compile time.
const fn hex(s: &str) -> Node {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lower-case hex digit"),
    }
}

/// `ZERO_COMMITMENTS[h]`: root of `2^h` zero leaves (padded size `32 << h`).
#[rustfmt::skip]
pub const ZERO_COMMITMENTS: [Node; HEIGHTS] = [
    hex("0000000000000000000000000000000000000000000000000000000000000000"), // 2^5
    hex("f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb0b"), // 2^6
    hex("3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333"), // 2^7
    hex("642a607ef886b004bf2c1978463ae1d4693ac0f410eb2d1b7a47fe205e5e750f"), // 2^8
    hex("57a2381a28652bf47f6bef7aca679be4aede5871ab5cf3eb2c08114488cb8526"), // 2^9
    hex("1f7ac9595510e09ea41c460b176430bb322cd6fb412ec57cb17d989a4310372f"), // 2^10
    hex("fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"), // 2^11
    hex("08c47b38ee13bc43f41b915c0eed9911a26086b3ed62401bf9d58b8d19dff624"), // 2^12
    hex("b2e47bfb11facd941f62af5c750f3ea5cc4df517d5c4f16db2b4d77baec1a32f"), // 2^13
    hex("f9226160c8f927bfdcc418cdf203493146008eaefb7d02194d5e548189005108"), // 2^14
    hex("2c1a964bb90b59ebfe0f6da29ad65ae3e417724a8f7c11745a40cac1e5e74011"), // 2^15
    hex("fee378cef16404b199ede0b13e11b624ff9d784fbbed878d83297e795e024f02"), // 2^16
    hex("8e9e2403fa884cf6237f60df25f83ee40dca9ed879eb6f6352d15084f5ad0d3f"), // 2^17
    hex("752d9693fa167524395476e317a98580f00947afb7a30540d625a9291cc12a07"), // 2^18
    hex("7022f60f7ef6adfa17117a52619e30cea82c68075adf1c667786ec506eef2d19"), // 2^19
    hex("d99887b973573a96e11393645236c17b1f4c7034d723c7a99f709bb4da61162b"), // 2^20
    hex("d0b530dbb0b4f25c5d2f2a28dfee808b53412a02931f18c499f5a254086b1326"), // 2^21
    hex("84c0421ba0685a01bf795a2344064fe424bd52a9d24377b394ff4c4b4568e811"), // 2^22
    hex("65f29e5d98d246c38b388cfc06db1f6b021303c5a289000bdce832a9c3ec421c"), // 2^23
    hex("a2247508285850965b7e334b3127b0c042b1d046dc54402137627cd8799ce13a"), // 2^24
    hex("dafdab6da9364453c26d33726b9fefe343be8f81649ec009aad3faff50617508"), // 2^25
    hex("d941d5e0d6314a995c33ffbd4fbe69118d73d4e5fd2cd31f0f7c86ebdd14e706"), // 2^26
    hex("514c435c3d04d349a5365fbd59ffc713629111785991c1a3c53af22079741a2f"), // 2^27
    hex("ad06853969d37d34ff08e09f56930a4ad19a89def60cbfee7e1d3381c1e71c37"), // 2^28
    hex("39560e7b13a93b07a243fd2720ffa7cb3e1d2e505ab3629e79f46313512cda06"), // 2^29
    hex("ccc3c012f5b05e811a2bbfdd0f6833b84275b47bf229c0052a82484f3c1a5b3d"), // 2^30
    hex("7df29b69773199e8f2b40b77919d048509eed768e2c7297b1f1437034fc3c62c"), // 2^31
    hex("66ce05a3667552cf45c02bcc4e8392919bdeac35de2ff56271848e9f7b675107"), // 2^32
    hex("d8610218425ab5e95b1ca6239d29a2e420d706a96f373e2f9c9a91d759d19b01"), // 2^33
    hex("6d364b1ef846441a5a4a68862314acc0a46f016717e53443e839eedf83c2853c"), // 2^34
    hex("077e5fde35c50a9303a55009e3498a4ebedff39c42b710b730d8ec7ac7afa63e"), // 2^35
    hex("e64005a6bfe3777953b8ad6ef93f0fca1049b2041654f2a411f7702799cece02"), // 2^36
    hex("259d3d6b1f4d876d1185e1123af6f5501af0f67cf15b5216255b7b178d12051d"), // 2^37
    hex("3f9a4d411da4ef1b36f35ff0a195ae392ab23fee7967b7c41b03d1613fc29239"), // 2^38
    hex("fe4ef328c61aa39cfdb2484eaa32a151b1fe3dfd1f96dd8c9711fd86d6c58113"), // 2^39
    hex("f55d68900e2d8381eccb8164cb9976f24b2de0dd61a31b97ce6eb23850d5e819"), // 2^40
    hex("aaaa8c4cb40aacee1e02dc65424b2a6c8e99f803b72f7929c4101d7fae6bff32"), // 2^41
    hex("c91a84c057fd4afcc209c3b482360cf7493b9129fa164cd1fe6b045a683b5322"), // 2^42
    hex("64a2c1df312ecb443b431946c02fe701514b5291091b888f03189bee8ea11416"), // 2^43
    hex("739953434ead6e24f1d1bf5b68ca823b2692b3000a7806d08c76640da98c3526"), // 2^44
    hex("771f5b63af6f7d1d515d134084d535f5f4d8ab8529b2c3f581f143f8cc38be2f"), // 2^45
    hex("9031a15bf51550a85db1f64f4db739e01125478a50ee332bc2b4f6462214b20b"), // 2^46
    hex("c83ba84710b74413f3be84a5466aff2d7f0c5472248ffbeb2266466a92ac4f12"), // 2^47
    hex("2fe598945de393714c10f447cec237039b5944077a78e0a9811cf5f7a45abe1b"), // 2^48
    hex("395355ae44754a5cde74898a3f2ef60d5871ab35019c610fc413a62d57646501"), // 2^49
    hex("4bd4712084416c77eec00cab23416eda8c8dbf681c8ccd0b96c0be980a40d818"), // 2^50
    hex("f6eeae7dee22146564155ebe4bdf633333401de68da4aa2a6e946c2363807a34"), // 2^51
    hex("8b43a114ba1c1bb80781e85f87b0bbee11c69fdbbd2ed81d6c9b4c7859c04e34"), // 2^52
    hex("f74dc344ee4fa47f07fb2732ad9443d94892ca8b53d006c9891a32ef2b74491e"), // 2^53
    hex("6f5246ae0f965e5424162403d3ab81ef8d15439c5f3a49038488e3640ef98718"), // 2^54
    hex("0b5b44ccf91ff135af58d2cf694b2ac99f22f5264863d6b9272b6155956aa10e"), // 2^55
    hex("b2cc6e19d5cb1fbd121f166fcaab4f3944df848312cfc5c1cb710744fe0fd908"), // 2^56
    hex("5e47488bb4694450b178632d44cac8009da55192f145bbe09ebf2fb14238d808"), // 2^57
    hex("28a8e1bc0e82f9ab28aaf0027644b37ebbea733a8f898aacb46f590cd271962e"), // 2^58
    hex("5db15a16cd3a2935047cbc00889d9c01e10a893027ab72bed2a9f775a9761a05"), // 2^59
    hex("53a4f5841b2c6d8988bbaf50e215867c019689aca408e465ac834b2b65232714"), // 2^60
    hex("733f5f34e8556e7f5967506ce4468b2348cd0f22148049e23c80db5d306d0b33"), // 2^61
    hex("69957ac972f823aab239b6496729c6b8b751a2f57097f2f05df341aca18bf225"), // 2^62
    hex("960fd9357620d55878cf99a2f687e3ee9347813185deaa148668f1eba240f53b"), // 2^63
];

/// Root of a zero subtree of the given height (`0 ≤ height < 59`).
#[inline]
pub fn zero_root(height: u32) -> Option<&'static Node> {
    ZERO_COMMITMENTS.get(height as usize)
}

/// Commitment of an all-zero piece of `padded_size` bytes: a power of two from 32 B to 2^63 B
/// (pieces proper start at 128 B; the 32 B and 64 B entries are the zero leaf and its parent).
pub fn zero_piece_commitment(padded_size: u64) -> Result<Node> {
    if padded_size < 32 || !padded_size.is_power_of_two() {
        return Err(Error::invalid(format!(
            "padded size {padded_size} is not a power of two of at least 32 bytes"
        )));
    }
    zero_root(padded_size.trailing_zeros() - 5)
        .copied()
        .ok_or_else(|| Error::invalid(format!("padded size {padded_size} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_pair;

    #[test]
    fn table_follows_recurrence() {
        assert_eq!(ZERO_COMMITMENTS[0], [0u8; 32]);
        for h in 1..HEIGHTS {
            let below = &ZERO_COMMITMENTS[h - 1];
            assert_eq!(ZERO_COMMITMENTS[h], hash_pair(below, below), "height {h}");
        }
    }

    #[test]
    fn lookup_validates_size() {
        assert!(zero_piece_commitment(0).is_err());
        assert!(zero_piece_commitment(16).is_err());
        assert!(zero_piece_commitment(96).is_err());
        assert_eq!(
            zero_piece_commitment(1 << 63).ok(),
            Some(ZERO_COMMITMENTS[58])
        );
        assert_eq!(zero_piece_commitment(128).ok(), Some(ZERO_COMMITMENTS[2]));
    }
}
