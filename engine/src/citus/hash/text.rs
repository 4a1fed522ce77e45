//! String-like kernels: `hashtext` (text, varchar), `hashbpchar`, `hashname` and `hashvarlena`
//! (bytea), ROUTING.md §3.3–3.4.
//!
//! For every deterministic collation (the only kind Citus allows on a distribution column) the
//! hash is `hash_bytes` over the raw bytes in the server encoding. The binary send format and the
//! text output of these types are the same bytes, except for bytea, whose text output is hex
//! (`bytea_output = hex`, which the source connection sets) or, tolerated here, the old escape
//! format.

use super::lookup3::hash_bytes;
use super::{HashError, hex};

/// `hashtext`: raw bytes, no trimming. Same for the binary and text forms.
#[inline]
pub(super) fn text(b: &[u8]) -> u32 {
    hash_bytes(b)
}

/// `hashbpchar`: trailing ASCII spaces are not hashed (`bpchartruelen`).
#[inline]
pub(super) fn bpchar(b: &[u8]) -> u32 {
    let len = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    hash_bytes(&b[..len])
}

/// `hashname`: bytes up to the first NUL.
#[inline]
pub(super) fn name(b: &[u8]) -> u32 {
    let len = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    hash_bytes(&b[..len])
}

/// `hashvarlena` over bytea's text output: `\x` followed by hex digits, or the escape format
/// (`\\` for a backslash, `\ooo` octal, anything else literal).
pub(super) fn bytea_text(s: &[u8]) -> Result<u32, HashError> {
    const TY: &str = "bytea";
    if let Some(hex) = s.strip_prefix(b"\\x") {
        let (pairs, odd) = hex.as_chunks::<2>();
        if !odd.is_empty() {
            return Err(HashError::text(TY, "odd number of hex digits"));
        }
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let out: &mut [u8] = if pairs.len() <= stack.len() {
            &mut stack[..pairs.len()]
        } else {
            heap.resize(pairs.len(), 0);
            &mut heap
        };
        let mut bad = 0u8;
        for (o, [h, l]) in out.iter_mut().zip(pairs) {
            let (v, invalid) = hex::pair(*h, *l);
            *o = v;
            bad |= invalid;
        }
        if bad != 0 {
            return Err(HashError::text(TY, "invalid hex digit"));
        }
        return Ok(hash_bytes(out));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i..] {
            [b'\\', b'\\', ..] => {
                out.push(b'\\');
                i += 2;
            }
            [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] => {
                out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                i += 4;
            }
            [b'\\', ..] => return Err(HashError::text(TY, "invalid escape")),
            [c, ..] => {
                out.push(c);
                i += 1;
            }
            [] => break,
        }
    }
    Ok(hash_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpchar_ignores_trailing_blanks_only() {
        assert_eq!(bpchar(b"ab   "), text(b"ab"));
        assert_eq!(bpchar(b"   "), text(b""));
        assert_eq!(bpchar(b" ab"), text(b" ab"));
        assert_ne!(bpchar(b"ab\t"), text(b"ab"));
    }

    #[test]
    fn bytea_hex_and_escape_agree() {
        let raw = [0x00u8, 0xff, 0x10, b'\\', b'a'];
        let want = hash_bytes(&raw);
        assert_eq!(bytea_text(b"\\x00ff105c61").unwrap(), want);
        assert_eq!(bytea_text(b"\\x00FF105C61").unwrap(), want);
        assert_eq!(bytea_text(b"\\000\\377\\020\\\\a").unwrap(), want);
        assert_eq!(bytea_text(b"\\x").unwrap(), hash_bytes(b""));
        assert!(bytea_text(b"\\x0").is_err());
        assert!(bytea_text(b"\\xzz").is_err());
        let long: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let hex: String = long.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            bytea_text(format!("\\x{hex}").as_bytes()).unwrap(),
            hash_bytes(&long)
        );
    }

    #[test]
    fn name_stops_at_nul() {
        assert_eq!(name(b"abc\0\0\0"), text(b"abc"));
    }
}
