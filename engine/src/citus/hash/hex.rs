//! Hex digit decoding shared by the uuid and bytea text parsers: a lookup table, so that a
//! canonical 36-character uuid decodes without a branch per character.

/// `HEX[c]` is the value of hex digit `c`, or `INVALID`.
const HEX: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Marks a non-hex character; its high bit lets callers OR results and test once.
pub(super) const INVALID: u8 = 0xF0;

/// The value of one hex digit, or a value with bits `0xF0` set.
#[inline(always)]
pub(super) fn digit(c: u8) -> u8 {
    HEX[c as usize]
}

/// Decodes two hex digits; the second value is non-zero if either was invalid.
#[inline(always)]
pub(super) fn pair(hi: u8, lo: u8) -> (u8, u8) {
    let (h, l) = (digit(hi), digit(lo));
    ((h << 4) | (l & 0x0F), (h | l) & INVALID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(pair(b'a', b'F'), (0xAF, 0));
        assert_eq!(pair(b'0', b'9'), (0x09, 0));
        assert_ne!(pair(b'g', b'0').1, 0);
        assert_ne!(pair(b'0', b' ').1, 0);
        for c in 0..=255u8 {
            assert_eq!(digit(c) < 16, c.is_ascii_hexdigit(), "{c}");
        }
    }
}
