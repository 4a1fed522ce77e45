//! `uuid_hash`: `hash_bytes` over the 16 bytes in canonical (textual) order. The binary form is
//! those 16 bytes; the text form is the usual `8-4-4-4-12` hex, and, as `uuid_in` allows,
//! upper case, braces and missing hyphens are tolerated.

use super::integer::fixed;
use super::lookup3::hash_bytes;
use super::{HashError, hex};

const TY: &str = "uuid";

pub(super) fn binary(b: &[u8]) -> Result<u32, HashError> {
    let raw: [u8; 16] = fixed(b, TY)?;
    Ok(hash_bytes(&raw))
}

pub(super) fn text(s: &[u8]) -> Result<u32, HashError> {
    Ok(hash_bytes(&parse(s)?))
}

/// Parses `uuid_out` text into its 16 bytes.
pub(super) fn parse(s: &[u8]) -> Result<[u8; 16], HashError> {
    if let Ok(canonical) = <&[u8; 36]>::try_from(s)
        && let Some(out) = parse_canonical(canonical)
    {
        return Ok(out);
    }
    parse_general(s)
}

/// The `8-4-4-4-12` form `uuid_out` prints, decoded with table lookups only.
#[inline]
fn parse_canonical(s: &[u8; 36]) -> Option<[u8; 16]> {
    if s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
        return None;
    }
    const STARTS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut out = [0u8; 16];
    let mut bad = 0u8;
    for (o, &at) in out.iter_mut().zip(&STARTS) {
        let (v, invalid) = hex::pair(s[at], s[at + 1]);
        *o = v;
        bad |= invalid;
    }
    (bad == 0).then_some(out)
}

/// Any spelling `uuid_in` accepts.
fn parse_general(s: &[u8]) -> Result<[u8; 16], HashError> {
    let body = match s {
        [b'{', inner @ .., b'}'] => inner,
        _ => s,
    };
    let mut out = [0u8; 16];
    let mut n = 0usize;
    let mut hi: Option<u8> = None;
    for (i, &c) in body.iter().enumerate() {
        if c == b'-' {
            // uuid_in allows a hyphen after any group of four hex digits, never twice in a row.
            if hi.is_some() || n == 0 || !n.is_multiple_of(2) || body.get(i + 1) == Some(&b'-') {
                return Err(HashError::text(TY, "misplaced hyphen"));
            }
            continue;
        }
        let v = hex::digit(c);
        if v >= 16 {
            return Err(HashError::text(TY, "invalid character"));
        }
        match hi.take() {
            None => hi = Some(v),
            Some(h) => {
                if n == 16 {
                    return Err(HashError::text(TY, "too many digits"));
                }
                out[n] = h << 4 | v;
                n += 1;
            }
        }
    }
    if n != 16 || hi.is_some() || body.last() == Some(&b'-') {
        return Err(HashError::text(TY, "wrong number of digits"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_md_vectors() {
        assert_eq!(
            text(b"00000000-0000-0000-0000-000000000000").unwrap() as i32,
            1353656403
        );
        assert_eq!(
            text(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap() as i32,
            1154666245
        );
    }

    #[test]
    fn accepted_spellings() {
        let want = text(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(text(b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap(), want);
        assert_eq!(
            text(b"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}").unwrap(),
            want
        );
        assert_eq!(text(b"a0eebc999c0b4ef8bb6d6bb9bd380a11").unwrap(), want);
        assert_eq!(
            binary(&parse(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap()).unwrap(),
            want
        );
        assert!(text(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1").is_err());
        assert!(text(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111").is_err());
        assert!(text(b"a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11").is_err());
        assert!(text(b"g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").is_err());
        assert!(binary(&[0; 15]).is_err());
    }
}
