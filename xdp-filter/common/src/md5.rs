//! MD5 (RFC 1321) for the XDP program and its loader: the compression function, written so it
//! compiles to straight-line code in eBPF (no tables, no loops, no calls), and a one-shot
//! [`digest`] for userspace (hashing HMAC keys longer than a block).
//!
//! The message block is given as sixteen 32-bit words already decoded little-endian, which is
//! what a plain `u32` load from the XDP scratch buffer gives on a little-endian machine.
//!
//! What this module does not do: HMAC, streaming, or anything constant-time beyond MD5 itself
//! (MD5 has no data-dependent branches or table lookups).

/// The initial chaining value (RFC 1321 §3.3, words A, B, C, D).
pub const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Bytes in one MD5 block.
pub const BLOCK_LEN: usize = 64;

#[inline(always)]
fn f(x: u32, y: u32, z: u32) -> u32 {
    // (x & y) | (!x & z), with one operation fewer.
    z ^ (x & (y ^ z))
}

#[inline(always)]
fn g(x: u32, y: u32, z: u32) -> u32 {
    // (x & z) | (y & !z)
    y ^ (z & (x ^ y))
}

#[inline(always)]
fn h(x: u32, y: u32, z: u32) -> u32 {
    x ^ y ^ z
}

#[inline(always)]
fn i(x: u32, y: u32, z: u32) -> u32 {
    y ^ (x | !z)
}

/// One step: `a = b + ((a + fun(b, c, d) + x + t) <<< s)`.
macro_rules! step {
    ($fun:ident, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr, $t:expr) => {
        $a = $b.wrapping_add(
            $a.wrapping_add($fun($b, $c, $d))
                .wrapping_add($x)
                .wrapping_add($t)
                .rotate_left($s),
        );
    };
}

/// Run the MD5 compression function on one block (`m`: 16 little-endian words).
#[inline(always)]
pub fn compress(state: &mut [u32; 4], m: &[u32; 16]) {
    let [mut a, mut b, mut c, mut d] = *state;

    // Round 1.
    step!(f, a, b, c, d, m[0], 7, 0xd76a_a478);
    step!(f, d, a, b, c, m[1], 12, 0xe8c7_b756);
    step!(f, c, d, a, b, m[2], 17, 0x2420_70db);
    step!(f, b, c, d, a, m[3], 22, 0xc1bd_ceee);
    step!(f, a, b, c, d, m[4], 7, 0xf57c_0faf);
    step!(f, d, a, b, c, m[5], 12, 0x4787_c62a);
    step!(f, c, d, a, b, m[6], 17, 0xa830_4613);
    step!(f, b, c, d, a, m[7], 22, 0xfd46_9501);
    step!(f, a, b, c, d, m[8], 7, 0x6980_98d8);
    step!(f, d, a, b, c, m[9], 12, 0x8b44_f7af);
    step!(f, c, d, a, b, m[10], 17, 0xffff_5bb1);
    step!(f, b, c, d, a, m[11], 22, 0x895c_d7be);
    step!(f, a, b, c, d, m[12], 7, 0x6b90_1122);
    step!(f, d, a, b, c, m[13], 12, 0xfd98_7193);
    step!(f, c, d, a, b, m[14], 17, 0xa679_438e);
    step!(f, b, c, d, a, m[15], 22, 0x49b4_0821);

    // Round 2.
    step!(g, a, b, c, d, m[1], 5, 0xf61e_2562);
    step!(g, d, a, b, c, m[6], 9, 0xc040_b340);
    step!(g, c, d, a, b, m[11], 14, 0x265e_5a51);
    step!(g, b, c, d, a, m[0], 20, 0xe9b6_c7aa);
    step!(g, a, b, c, d, m[5], 5, 0xd62f_105d);
    step!(g, d, a, b, c, m[10], 9, 0x0244_1453);
    step!(g, c, d, a, b, m[15], 14, 0xd8a1_e681);
    step!(g, b, c, d, a, m[4], 20, 0xe7d3_fbc8);
    step!(g, a, b, c, d, m[9], 5, 0x21e1_cde6);
    step!(g, d, a, b, c, m[14], 9, 0xc337_07d6);
    step!(g, c, d, a, b, m[3], 14, 0xf4d5_0d87);
    step!(g, b, c, d, a, m[8], 20, 0x455a_14ed);
    step!(g, a, b, c, d, m[13], 5, 0xa9e3_e905);
    step!(g, d, a, b, c, m[2], 9, 0xfcef_a3f8);
    step!(g, c, d, a, b, m[7], 14, 0x676f_02d9);
    step!(g, b, c, d, a, m[12], 20, 0x8d2a_4c8a);

    // Round 3.
    step!(h, a, b, c, d, m[5], 4, 0xfffa_3942);
    step!(h, d, a, b, c, m[8], 11, 0x8771_f681);
    step!(h, c, d, a, b, m[11], 16, 0x6d9d_6122);
    step!(h, b, c, d, a, m[14], 23, 0xfde5_380c);
    step!(h, a, b, c, d, m[1], 4, 0xa4be_ea44);
    step!(h, d, a, b, c, m[4], 11, 0x4bde_cfa9);
    step!(h, c, d, a, b, m[7], 16, 0xf6bb_4b60);
    step!(h, b, c, d, a, m[10], 23, 0xbebf_bc70);
    step!(h, a, b, c, d, m[13], 4, 0x289b_7ec6);
    step!(h, d, a, b, c, m[0], 11, 0xeaa1_27fa);
    step!(h, c, d, a, b, m[3], 16, 0xd4ef_3085);
    step!(h, b, c, d, a, m[6], 23, 0x0488_1d05);
    step!(h, a, b, c, d, m[9], 4, 0xd9d4_d039);
    step!(h, d, a, b, c, m[12], 11, 0xe6db_99e5);
    step!(h, c, d, a, b, m[15], 16, 0x1fa2_7cf8);
    step!(h, b, c, d, a, m[2], 23, 0xc4ac_5665);

    // Round 4.
    step!(i, a, b, c, d, m[0], 6, 0xf429_2244);
    step!(i, d, a, b, c, m[7], 10, 0x432a_ff97);
    step!(i, c, d, a, b, m[14], 15, 0xab94_23a7);
    step!(i, b, c, d, a, m[5], 21, 0xfc93_a039);
    step!(i, a, b, c, d, m[12], 6, 0x655b_59c3);
    step!(i, d, a, b, c, m[3], 10, 0x8f0c_cc92);
    step!(i, c, d, a, b, m[10], 15, 0xffef_f47d);
    step!(i, b, c, d, a, m[1], 21, 0x8584_5dd1);
    step!(i, a, b, c, d, m[8], 6, 0x6fa8_7e4f);
    step!(i, d, a, b, c, m[15], 10, 0xfe2c_e6e0);
    step!(i, c, d, a, b, m[6], 15, 0xa301_4314);
    step!(i, b, c, d, a, m[13], 21, 0x4e08_11a1);
    step!(i, a, b, c, d, m[4], 6, 0xf753_7e82);
    step!(i, d, a, b, c, m[11], 10, 0xbd3a_f235);
    step!(i, c, d, a, b, m[2], 15, 0x2ad7_d2bb);
    step!(i, b, c, d, a, m[9], 21, 0xeb86_d391);

    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// Decode a 64-byte block into the 16 little-endian words [`compress`] takes.
pub fn block_words(block: &[u8; BLOCK_LEN]) -> [u32; 16] {
    let mut words = [0u32; 16];
    let mut k = 0;
    while k < 16 {
        words[k] = u32::from_le_bytes([
            block[4 * k],
            block[4 * k + 1],
            block[4 * k + 2],
            block[4 * k + 3],
        ]);
        k += 1;
    }
    words
}

/// The digest bytes of a chaining value (A, B, C, D each little-endian).
pub fn state_bytes(state: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut k = 0;
    while k < 4 {
        let w = state[k].to_le_bytes();
        out[4 * k] = w[0];
        out[4 * k + 1] = w[1];
        out[4 * k + 2] = w[2];
        out[4 * k + 3] = w[3];
        k += 1;
    }
    out
}

/// MD5 of `data`, in one go. For userspace; the XDP program pads its scratch buffer itself.
pub fn digest(data: &[u8]) -> [u8; 16] {
    let mut state = IV;
    let mut blocks = data.chunks_exact(BLOCK_LEN);
    for block in &mut blocks {
        let mut b = [0u8; BLOCK_LEN];
        b.copy_from_slice(block);
        compress(&mut state, &block_words(&b));
    }
    let rest = blocks.remainder();
    // The rest, 0x80, zeros, and the bit length: one block, or two when the rest is 56+ bytes.
    let mut tail = [0u8; 2 * BLOCK_LEN];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < BLOCK_LEN - 8 {
        BLOCK_LEN
    } else {
        2 * BLOCK_LEN
    };
    let bits = (data.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_le_bytes());
    for block in tail[..tail_len].chunks_exact(BLOCK_LEN) {
        let mut b = [0u8; BLOCK_LEN];
        b.copy_from_slice(block);
        compress(&mut state, &block_words(&b));
    }
    state_bytes(&state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (k, b) in bytes.iter().enumerate() {
            out[2 * k] = DIGITS[usize::from(b >> 4)];
            out[2 * k + 1] = DIGITS[usize::from(b & 0x0F)];
        }
        out
    }

    /// The test suite of RFC 1321 appendix A.5.
    #[test]
    fn rfc1321_test_suite() {
        let cases: [(&[u8], &[u8; 32]); 7] = [
            (b"", b"d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", b"0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", b"900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", b"f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"abcdefghijklmnopqrstuvwxyz",
                b"c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                b"d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                b"57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&hex(&digest(input)), expected);
        }
    }

    #[test]
    fn matches_the_md5_crate_around_every_padding_boundary() {
        use md5_crate::Digest as _;
        let data: [u8; 300] = core::array::from_fn(|k| (k * 7 + 3) as u8);
        for len in 0..data.len() {
            let expected: [u8; 16] = md5_crate::Md5::digest(&data[..len]).into();
            assert_eq!(digest(&data[..len]), expected, "length {len}");
        }
    }
}
