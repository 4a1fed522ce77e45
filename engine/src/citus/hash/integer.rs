//! Integer-like kernels: `hashint2`, `hashint4`, `hashint8`, `hashoid`, `hashchar` (used by
//! `bool` and `"char"`), and the decimal parsing their text forms need (ROUTING.md §3.2).
//!
//! `hashint8` folds the high word into the low one so that equal values hash equally across
//! int2, int4 and int8; the property tests check that against the server.

use super::HashError;
use super::lookup3::hash_uint32;

/// `hashint4(v)`.
#[inline]
pub fn hashint4(v: i32) -> u32 {
    hash_uint32(v as u32)
}

/// `hashint8(v)`: the low word XOR the high word (complemented for negatives), then
/// `hash_uint32`.
#[inline]
pub fn hashint8(v: i64) -> u32 {
    let lo = v as u32;
    let hi = (v >> 32) as u32;
    hash_uint32(if v >= 0 { lo ^ hi } else { lo ^ !hi })
}

/// `hashchar(c)`: the C `char` is sign-extended, as on x86-64 (on aarch64 `char` is unsigned,
/// so bytes >= 0x80 hash differently there; ROUTING.md §3.2).
#[inline]
pub fn hashchar(c: u8) -> u32 {
    hash_uint32(c as i8 as i32 as u32)
}

/// Reads exactly `N` bytes of a binary send-format value.
#[inline]
pub(super) fn fixed<const N: usize>(b: &[u8], ty: &'static str) -> Result<[u8; N], HashError> {
    b.try_into()
        .map_err(|_| HashError::binary(ty, "wrong length"))
}

/// Parses a decimal integer in `[min, max]` (optional sign, ASCII digits only), the form
/// `int2out`/`int4out`/`int8out`/`oidout` produce.
pub(super) fn parse_int(s: &[u8], min: i64, max: i64, ty: &'static str) -> Result<i64, HashError> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(HashError::text(ty, "not an integer"));
    }
    // Up to 18 digits cannot overflow an i64: no checks per digit.
    if digits.len() <= 18 {
        let mut acc: i64 = 0;
        let mut bad = false;
        for &d in digits {
            let v = d.wrapping_sub(b'0');
            bad |= v > 9;
            acc = acc.wrapping_mul(10).wrapping_add(i64::from(v));
        }
        if bad {
            return Err(HashError::text(ty, "not an integer"));
        }
        let v = if neg { -acc } else { acc };
        if v < min || v > max {
            return Err(HashError::text(ty, "out of range"));
        }
        return Ok(v);
    }
    // Accumulate negatively so that i64::MIN parses without overflow.
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(HashError::text(ty, "not an integer"));
        }
        acc = acc
            .checked_mul(10)
            .and_then(|a| a.checked_sub(i64::from(d - b'0')))
            .ok_or(HashError::text(ty, "out of range"))?;
    }
    let v = if neg {
        acc
    } else {
        acc.checked_neg()
            .ok_or(HashError::text(ty, "out of range"))?
    };
    if v < min || v > max {
        return Err(HashError::text(ty, "out of range"));
    }
    Ok(v)
}

pub(super) fn int2_binary(b: &[u8]) -> Result<u32, HashError> {
    Ok(hashint4(i32::from(i16::from_be_bytes(fixed(
        b, "smallint",
    )?))))
}

pub(super) fn int2_text(s: &[u8]) -> Result<u32, HashError> {
    let v = parse_int(s, i16::MIN.into(), i16::MAX.into(), "smallint")?;
    Ok(hashint4(v as i32))
}

pub(super) fn int4_binary(b: &[u8]) -> Result<u32, HashError> {
    Ok(hashint4(i32::from_be_bytes(fixed(b, "integer")?)))
}

pub(super) fn int4_text(s: &[u8]) -> Result<u32, HashError> {
    let v = parse_int(s, i32::MIN.into(), i32::MAX.into(), "integer")?;
    Ok(hashint4(v as i32))
}

pub(super) fn int8_binary(b: &[u8]) -> Result<u32, HashError> {
    Ok(hashint8(i64::from_be_bytes(fixed(b, "bigint")?)))
}

pub(super) fn int8_text(s: &[u8]) -> Result<u32, HashError> {
    Ok(hashint8(parse_int(s, i64::MIN, i64::MAX, "bigint")?))
}

pub(super) fn oid_binary(b: &[u8]) -> Result<u32, HashError> {
    Ok(hash_uint32(u32::from_be_bytes(fixed(b, "oid")?)))
}

pub(super) fn oid_text(s: &[u8]) -> Result<u32, HashError> {
    // oidin also accepts negative numbers down to INT32_MIN and wraps them; oidout never
    // produces them, but accept them the same way.
    let v = parse_int(s, i32::MIN.into(), u32::MAX.into(), "oid")?;
    Ok(hash_uint32(v as u32))
}

pub(super) fn bool_binary(b: &[u8]) -> Result<u32, HashError> {
    let [v] = fixed::<1>(b, "boolean")?;
    Ok(hashchar(u8::from(v != 0)))
}

pub(super) fn bool_text(s: &[u8]) -> Result<u32, HashError> {
    let v = match s {
        b"t" | b"true" | b"TRUE" | b"True" | b"on" | b"yes" | b"y" | b"1" => 1,
        b"f" | b"false" | b"FALSE" | b"False" | b"off" | b"no" | b"n" | b"0" => 0,
        _ => return Err(HashError::text("boolean", "not a boolean")),
    };
    Ok(hashchar(v))
}

pub(super) fn char_binary(b: &[u8]) -> Result<u32, HashError> {
    // charsend sends one byte; tolerate an empty value as the NUL character.
    match b {
        [] => Ok(hashchar(0)),
        [c] => Ok(hashchar(*c)),
        _ => Err(HashError::binary("\"char\"", "wrong length")),
    }
}

pub(super) fn char_text(s: &[u8]) -> Result<u32, HashError> {
    // charout (PG 15+): NUL -> "", bytes >= 0x80 -> "\ooo"; earlier versions send the raw byte.
    match s {
        [] => Ok(hashchar(0)),
        [c] => Ok(hashchar(*c)),
        [b'\\', o1, o2, o3] if [o1, o2, o3].iter().all(|o| (b'0'..=b'7').contains(o)) => {
            let v = u32::from(o1 - b'0') << 6 | u32::from(o2 - b'0') << 3 | u32::from(o3 - b'0');
            let c = u8::try_from(v).map_err(|_| HashError::text("\"char\"", "bad octal escape"))?;
            Ok(hashchar(c))
        }
        _ => Err(HashError::text("\"char\"", "more than one character")),
    }
}

/// `pg_lsn_out` text (`16/B374D848`) hashed with `hashint8`, as `pg_lsn_hash` does.
pub(super) fn pg_lsn_text(s: &[u8]) -> Result<u32, HashError> {
    const TY: &str = "pg_lsn";
    let text = std::str::from_utf8(s).map_err(|_| HashError::text(TY, "not an LSN"))?;
    let (hi, lo) = text
        .split_once('/')
        .ok_or(HashError::text(TY, "not an LSN"))?;
    let half = |h: &str| {
        if h.is_empty() || h.len() > 8 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(HashError::text(TY, "not an LSN"));
        }
        u32::from_str_radix(h, 16).map_err(|_| HashError::text(TY, "not an LSN"))
    };
    let lsn = u64::from(half(hi)?) << 32 | u64::from(half(lo)?);
    Ok(hashint8(lsn as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_vectors() {
        assert_eq!(hashint4(123) as i32, -205084363);
        assert_eq!(hashint4(0) as i32, -272711505);
        assert_eq!(hashint4(1) as i32, -1905060026);
        assert_eq!(hashint4(i32::MAX) as i32, -96758253);
        assert_eq!(hashint4(i32::MIN) as i32, -1524351049);
        assert_eq!(hashint8(-1) as i32, 385747274);
        assert_eq!(hashint8(5_000_000_000) as i32, -694934712);
        assert_eq!(hashint8(2_608_474_032) as i32, 2147483647);
        assert_eq!(hashint8(963_809_240) as i32, -2147483648);
        assert_eq!(int2_text(b"-3").unwrap() as i32, -1044245375);
        assert_eq!(bool_text(b"f").unwrap() as i32, -272711505);
        assert_eq!(bool_text(b"t").unwrap() as i32, -1905060026);
    }

    /// distributed_planning.out: hashint8 over {1,3,5,2,4,6, 2608474032, 963809240}, sorted.
    #[test]
    fn distributed_planning_vector() {
        let mut got: Vec<i32> = [1i64, 3, 5, 2, 4, 6, 2_608_474_032, 963_809_240]
            .iter()
            .map(|v| hashint8(*v) as i32)
            .collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                -2147483648,
                -1905060026,
                -1330264708,
                -1011077333,
                -28094569,
                566031088,
                1134484726,
                2147483647
            ]
        );
    }

    #[test]
    fn int8_equals_int4_in_int4_range() {
        for v in [0i32, 1, -1, 42, i32::MAX, i32::MIN, -123_456] {
            assert_eq!(hashint8(i64::from(v)), hashint4(v));
        }
    }

    #[test]
    fn integer_text_limits() {
        assert_eq!(
            parse_int(b"-9223372036854775808", i64::MIN, i64::MAX, "bigint").unwrap(),
            i64::MIN
        );
        assert_eq!(
            parse_int(b"9223372036854775807", i64::MIN, i64::MAX, "bigint").unwrap(),
            i64::MAX
        );
        assert!(parse_int(b"9223372036854775808", i64::MIN, i64::MAX, "bigint").is_err());
        assert!(int2_text(b"32768").is_err());
        assert!(int4_text(b"").is_err());
        assert!(int4_text(b"-").is_err());
        assert!(int4_text(b"1x").is_err());
        assert_eq!(oid_text(b"4294967295").unwrap(), hash_uint32(u32::MAX));
    }

    #[test]
    fn char_text_and_binary_agree() {
        for c in 0u8..=255 {
            let text: Vec<u8> = match c {
                0 => vec![],
                0x80..=0xFF => format!("\\{c:03o}").into_bytes(),
                _ => vec![c],
            };
            assert_eq!(
                char_text(&text).unwrap(),
                char_binary(&[c]).unwrap(),
                "char {c}"
            );
        }
    }
}
