//! PostgreSQL's `hash_bytes` (Bob Jenkins' lookup3, as adapted in `src/common/hashfn.c`) and
//! `hash_bytes_uint32`.
//!
//! Every type kernel ends here, so this is the hottest code of the router. Citus reinterprets
//! the `uint32` result as `int32`; these functions return the raw `u32` and the kernels do the
//! cast once.
//!
//! PostgreSQL reads 32-bit words in the machine's native order; every platform Citus supports in
//! production (x86-64, aarch64) is little-endian, so words are read little-endian here
//! (ROUTING.md §3). The C code's aligned and unaligned paths give identical results on a
//! little-endian machine, so alignment never matters.

const GOLDEN: u32 = 0x9e37_79b9;
const SEED: u32 = 3_923_095;

#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn finalize(mut a: u32, mut b: u32, mut c: u32) -> u32 {
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

#[inline(always)]
fn le32(k: &[u8; 12], at: usize) -> u32 {
    u32::from_le_bytes([k[at], k[at + 1], k[at + 2], k[at + 3]])
}

/// `hash_bytes(k, len)`: PostgreSQL's `hash_any`, the hash behind `hashtext`, `hashvarlena`,
/// `uuid_hash`, `hashfloat8`, `hash_numeric` and `hashinet`.
///
/// Input of any length is accepted: PostgreSQL passes an `int` length, and values past 1 GB
/// cannot exist in a varlena, but the algorithm itself wraps the length into the seed.
pub fn hash_bytes(k: &[u8]) -> u32 {
    // The seed takes the length as a C `uint32` (the `int keylen` is converted implicitly).
    let init = GOLDEN.wrapping_add(k.len() as u32).wrapping_add(SEED);
    let (mut a, mut b, mut c) = (init, init, init);

    let (blocks, rest) = k.as_chunks::<12>();
    for block in blocks {
        a = a.wrapping_add(le32(block, 0));
        b = b.wrapping_add(le32(block, 4));
        c = c.wrapping_add(le32(block, 8));
        mix(&mut a, &mut b, &mut c);
    }

    // Tail of 0..=11 bytes. The C switch adds bytes 8..10 into c shifted up by one byte ("the
    // lowest byte of c is reserved for the length"); zero-padding the tail to 12 bytes and
    // shifting the third word left by 8 is the same computation (byte 11 is always zero).
    let mut tail = [0u8; 12];
    tail[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(le32(&tail, 0));
    b = b.wrapping_add(le32(&tail, 4));
    c = c.wrapping_add(le32(&tail, 8) << 8);
    finalize(a, b, c)
}

/// `hash_bytes` of `count` 16-bit values laid out little-endian (`count * 2` bytes), computed
/// from an iterator without materializing the bytes: `hash_numeric` hashes its base-10000
/// digits this way. Missing items count as zero.
#[inline]
pub(crate) fn hash_u16_le(count: usize, mut digits: impl Iterator<Item = u16>) -> u32 {
    let init = GOLDEN.wrapping_add((count * 2) as u32).wrapping_add(SEED);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut next = || u32::from(digits.next().unwrap_or(0));
    let mut word = || {
        let lo = next();
        lo | next() << 16
    };
    let mut remaining = count;
    while remaining >= 6 {
        a = a.wrapping_add(word());
        b = b.wrapping_add(word());
        c = c.wrapping_add(word());
        mix(&mut a, &mut b, &mut c);
        remaining -= 6;
    }
    // At most five digits (ten bytes) remain; the rest of the 12-byte tail is zero.
    let mut tail = [0u32; 6];
    for t in tail.iter_mut().take(remaining) {
        *t = next();
    }
    a = a.wrapping_add(tail[0] | tail[1] << 16);
    b = b.wrapping_add(tail[2] | tail[3] << 16);
    c = c.wrapping_add(tail[4] << 8);
    finalize(a, b, c)
}

/// `hash_bytes_uint32(k)`: the hash of one 32-bit word, used by `hashint4`, `hashint8`,
/// `hashoid`, `hashchar`, `hashenum`. Equal to `hash_bytes(&k.to_le_bytes())`.
#[inline]
pub fn hash_uint32(k: u32) -> u32 {
    let init = GOLDEN.wrapping_add(4).wrapping_add(SEED);
    finalize(init.wrapping_add(k), init, init)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashtext(s: &str) -> i32 {
        hash_bytes(s.as_bytes()) as i32
    }

    /// ROUTING.md §3.9: published `hashtext` outputs.
    #[test]
    fn hashtext_published_vectors() {
        let cases: &[(&str, i32)] = &[
            ("", -1477818771),
            ("a", 1075015857),
            ("ab", 1718550461),
            ("abc", -785388649),
            ("abcd", -393934804),
            ("abcde", -445659580),
            ("abcdefgh", -1960928205),
            ("abcdefghijk", -1483803693),
            ("abcdefghijkl", -1586087212),
            ("abcdefghijklm", 405849808),
            ("привет мир", 1629092517),
            ("sample", 1573005290),
            ("3", -1895345704),
        ];
        for (s, want) in cases {
            assert_eq!(hashtext(s), *want, "hashtext({s:?})");
        }
    }

    #[test]
    fn hashtext_repeat_x_vectors() {
        let want: [i32; 15] = [
            -1477818771,
            1074944137,
            -1086392228,
            -1992236649,
            -1379736791,
            -370454118,
            1489915569,
            -66683019,
            -2126973000,
            1651296771,
            755764456,
            -1494243903,
            631527812,
            28686851,
            -9498641,
        ];
        for (n, w) in want.iter().enumerate() {
            assert_eq!(hashtext(&"x".repeat(n)), *w, "repeat('x', {n})");
        }
    }

    /// The C tail switch, written out literally, agrees with the padded form for every length.
    #[test]
    fn tail_matches_c_switch() {
        fn reference(k: &[u8]) -> u32 {
            let init = GOLDEN.wrapping_add(k.len() as u32).wrapping_add(SEED);
            let (mut a, mut b, mut c) = (init, init, init);
            let mut k = k;
            while k.len() >= 12 {
                a = a.wrapping_add(u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
                b = b.wrapping_add(u32::from_le_bytes([k[4], k[5], k[6], k[7]]));
                c = c.wrapping_add(u32::from_le_bytes([k[8], k[9], k[10], k[11]]));
                mix(&mut a, &mut b, &mut c);
                k = &k[12..];
            }
            let n = k.len();
            let byte = |i: usize| u32::from(k[i]);
            if n >= 11 {
                c = c.wrapping_add(byte(10) << 24);
            }
            if n >= 10 {
                c = c.wrapping_add(byte(9) << 16);
            }
            if n >= 9 {
                c = c.wrapping_add(byte(8) << 8);
            }
            if n >= 8 {
                b = b.wrapping_add(byte(7) << 24);
            }
            if n >= 7 {
                b = b.wrapping_add(byte(6) << 16);
            }
            if n >= 6 {
                b = b.wrapping_add(byte(5) << 8);
            }
            if n >= 5 {
                b = b.wrapping_add(byte(4));
            }
            if n >= 4 {
                a = a.wrapping_add(byte(3) << 24);
            }
            if n >= 3 {
                a = a.wrapping_add(byte(2) << 16);
            }
            if n >= 2 {
                a = a.wrapping_add(byte(1) << 8);
            }
            if n >= 1 {
                a = a.wrapping_add(byte(0));
            }
            finalize(a, b, c)
        }
        let data: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(151) ^ 0xA5) as u8)
            .collect();
        for len in 0..200 {
            assert_eq!(
                hash_bytes(&data[..len]),
                reference(&data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn streamed_u16_hash_equals_hash_bytes() {
        let digits: Vec<u16> = (0..40u32)
            .map(|i| (i.wrapping_mul(2654435761) % 10000) as u16)
            .collect();
        for n in 0..digits.len() {
            let bytes: Vec<u8> = digits[..n].iter().flat_map(|d| d.to_le_bytes()).collect();
            assert_eq!(
                hash_u16_le(n, digits[..n].iter().copied()),
                hash_bytes(&bytes),
                "{n} digits"
            );
        }
    }

    #[test]
    fn hash_uint32_equals_hash_bytes_of_le_word() {
        for k in [0u32, 1, 123, 0xFFFF_FFFF, 0x8000_0000, 0xDEAD_BEEF] {
            assert_eq!(hash_uint32(k), hash_bytes(&k.to_le_bytes()));
        }
        assert_eq!(hash_uint32(0) as i32, -272711505);
        assert_eq!(hash_uint32(1) as i32, -1905060026);
        assert_eq!(hash_uint32(123) as i32, -205084363);
    }
}
