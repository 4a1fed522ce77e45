//! `hash_numeric` (PG 14+ form), ROUTING.md §3.5.
//!
//! PostgreSQL stores a numeric as base-10000 digits (`int16` each) with a `weight` (the
//! base-10000 exponent of the first digit); sign and display scale are stored but not hashed.
//! The hash skips leading and trailing zero digits (adjusting the weight for the leading ones),
//! hashes the remaining digits as native (little-endian) `int16`s with `hash_bytes`, and XORs in
//! the weight. NaN and ±Infinity hash to 0, zero to `0xFFFFFFFF`.
//!
//! The binary send format carries exactly those digits (big-endian). The text form is parsed
//! straight into base-10000 groups without building a big number: a decimal digit with decimal
//! exponent `e` belongs to base-10000 digit `floor(e / 4)` at position `e mod 4`.
//!
//! **Typmod caveat.** The value hashed must be the value *as stored in the target column*: a
//! `numeric(p, s)` column rounds on input. Values arriving from the source are already rounded
//! by the source column's typmod; when the target's typmod is narrower, the target stores (and
//! Citus hashes) a differently rounded value. The engine requires matching column types; this
//! module hashes what it is given.

use super::HashError;
use super::lookup3::hash_u16_le;

const TY: &str = "numeric";
/// The stored value zero hashes to `(uint32) -1`.
const ZERO_HASH: u32 = u32::MAX;

const SIGN_NAN: u16 = 0xC000;
const SIGN_PINF: u16 = 0xD000;
const SIGN_NINF: u16 = 0xF000;

/// `hash_numeric` over `numeric_send` output: `ndigits`, `weight`, `sign`, `dscale` (int16 BE
/// each), then `ndigits` base-10000 digits (int16 BE).
pub(super) fn binary(b: &[u8]) -> Result<u32, HashError> {
    let Some((head, rest)) = b.split_first_chunk::<8>() else {
        return Err(HashError::binary(TY, "too short"));
    };
    let ndigits = i16::from_be_bytes([head[0], head[1]]);
    let weight = i16::from_be_bytes([head[2], head[3]]);
    let sign = u16::from_be_bytes([head[4], head[5]]);
    let Ok(ndigits) = usize::try_from(ndigits) else {
        return Err(HashError::binary(TY, "negative digit count"));
    };
    let (digits, extra) = rest.as_chunks::<2>();
    if digits.len() != ndigits || !extra.is_empty() {
        return Err(HashError::binary(TY, "digit count does not match length"));
    }
    match sign {
        0x0000 | 0x4000 => {}
        SIGN_NAN | SIGN_PINF | SIGN_NINF => return Ok(0),
        _ => return Err(HashError::binary(TY, "invalid sign")),
    }
    let value = |d: &[u8; 2]| u16::from_be_bytes(*d);
    let Some(start) = digits.iter().position(|d| value(d) != 0) else {
        return Ok(ZERO_HASH);
    };
    let end = digits
        .iter()
        .rposition(|d| value(d) != 0)
        .map_or(start, |e| e + 1);
    let core = &digits[start..end];
    if core.iter().any(|d| value(d) >= 10000) {
        return Err(HashError::binary(TY, "digit out of range"));
    }
    let hash = hash_u16_le(core.len(), core.iter().map(value));
    Ok(hash ^ (i32::from(weight) - start as i32) as u32)
}

/// `hash_numeric` over `numeric_out` text (`-12.340`, `NaN`, `Infinity`), also accepting the
/// exponent notation of `numeric_in` and JSON numbers (`1e20`, `-1.5E-3`).
pub(super) fn text(s: &[u8]) -> Result<u32, HashError> {
    let s = s.trim_ascii();
    let unsigned = match s {
        [b'-' | b'+', rest @ ..] => rest,
        _ => s,
    };
    if unsigned.eq_ignore_ascii_case(b"nan") && unsigned.len() == s.len()
        || unsigned.eq_ignore_ascii_case(b"infinity")
        || unsigned.eq_ignore_ascii_case(b"inf")
    {
        return Ok(0);
    }
    let (mantissa, exponent) = match unsigned.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => (&unsigned[..i], parse_exponent(&unsigned[i + 1..])?),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|&c| c == b'.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, &[][..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(HashError::text(TY, "no digits"));
    }
    if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
        return Err(HashError::text(TY, "invalid character"));
    }
    let int_len = int_part.len();
    let digit = |j: usize| -> u8 {
        if j < int_len {
            int_part[j] - b'0'
        } else {
            frac_part[j - int_len] - b'0'
        }
    };
    let n = int_len + frac_part.len();
    let Some(first) = (0..n).find(|&j| digit(j) != 0) else {
        return Ok(ZERO_HASH);
    };
    let last = (first..n).rev().find(|&j| digit(j) != 0).unwrap_or(first);

    // Decimal exponent of digit j: int_len - 1 - j + exponent. Digit j belongs to base-10000
    // digit floor(e / 4), at decimal position e mod 4 within it.
    let int_len_i = i64::try_from(int_len).map_err(|_| HashError::text(TY, "too long"))?;
    let top = int_len_i - 1 + exponent; // exponent of digit 0
    let exp_of = |j: usize| top - j as i64;
    let weight = exp_of(first).div_euclid(4);
    let low = exp_of(last).div_euclid(4);
    // make_result's limits: the weight is an int16 and the display scale at most 0x3FFF.
    if weight > i64::from(i16::MAX) || weight < i64::from(i16::MIN) || exp_of(last) < -0x3FFF {
        return Err(HashError::text(TY, "value overflows numeric format"));
    }
    let count = (weight - low + 1) as usize;
    let groups = (0..count as i64).map(|k| {
        let g = weight - k;
        let mut acc = 0u16;
        for p in (0..4).rev() {
            // Index of the digit with exponent 4g + p, if it lies within [first, last].
            let j = top - (4 * g + p);
            if j >= first as i64 && j <= last as i64 {
                acc += u16::from(digit(j as usize)) * POW10[p as usize];
            }
        }
        acc
    });
    Ok(hash_u16_le(count, groups) ^ weight as u32)
}

const POW10: [u16; 4] = [1, 10, 100, 1000];

fn parse_exponent(s: &[u8]) -> Result<i64, HashError> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HashError::text(TY, "invalid exponent"));
    }
    // numeric_in rejects exponents beyond INT_MAX / 2.
    let mut v: i64 = 0;
    for &d in digits {
        v = v * 10 + i64::from(d - b'0');
        if v >= i64::from(i32::MAX / 2) {
            return Err(HashError::text(TY, "value overflows numeric format"));
        }
    }
    Ok(if neg { -v } else { v })
}

/// `numeric_send` of a decimal string, for tests: the digits a server would send.
#[cfg(test)]
pub(crate) fn encode_binary(s: &str) -> Vec<u8> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int_part, frac_part) = s.split_once('.').unwrap_or((s, ""));
    let int_part = int_part.trim_start_matches('0');
    let pad_int = (4 - int_part.len() % 4) % 4;
    let pad_frac = (4 - frac_part.len() % 4) % 4;
    let all = format!(
        "{}{int_part}{frac_part}{}",
        "0".repeat(pad_int),
        "0".repeat(pad_frac)
    );
    let groups: Vec<u16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
        .collect();
    let int_groups = (int_part.len() + pad_int) / 4;
    let weight = int_groups as i16 - 1;
    let mut out = Vec::new();
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if neg { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(frac_part.len() as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> i32 {
        text(s.as_bytes()).unwrap() as i32
    }

    #[test]
    fn routing_md_vectors() {
        assert_eq!(h("30"), -282860963);
        assert_eq!(h("100"), 1186574835);
        assert_eq!(h("0"), -1);
        assert_eq!(h("1"), 1324868424);
        assert_eq!(h("1.5"), 692967894);
        assert_eq!(h("0.5"), -1968164085);
        assert_eq!(h("12345.678"), 573919094);
        assert_eq!(h("1e10"), 1186574833);
        assert_eq!(h("0.00012"), 1267246686);
        assert_eq!(h("NaN"), 0);
        assert_eq!(h("Infinity"), 0);
        assert_eq!(h("-Infinity"), 0);
    }

    #[test]
    fn scale_and_sign_are_not_hashed() {
        assert_eq!(h("1.5"), h("1.50"));
        assert_eq!(h("1.5"), h("-1.5"));
        assert_eq!(h("0"), h("-0.000"));
        assert_eq!(h("100"), h("1e2"));
        assert_eq!(h("0.00012"), h("1.2e-4"));
        assert_eq!(h("10000000000"), h("1e10"));
        assert_eq!(h("123.456"), h("0123.4560"));
    }

    #[test]
    fn binary_equals_text() {
        for s in [
            "0",
            "1",
            "-1",
            "1.5",
            "0.5",
            "12345.678",
            "10000000000",
            "0.00012",
            "100",
            "30",
            "-0.00000000015",
            "99999999999999999999.99999999999999999999",
            "0.0001",
            "10000",
            "123456789012345678901234567890.123456789",
            "-17334605453240.30",
        ] {
            assert_eq!(
                binary(&encode_binary(s)).unwrap(),
                text(s.as_bytes()).unwrap(),
                "{s}"
            );
        }
        let long = format!("{}.{}", "9".repeat(700), "1".repeat(701));
        assert_eq!(
            binary(&encode_binary(&long)).unwrap(),
            text(long.as_bytes()).unwrap()
        );
    }

    #[test]
    fn binary_skips_unnormalized_zero_digits() {
        // ndigits 3, weight 1: [0, 1, 0] = 1 (a receiver may send unstripped digits).
        let b = [0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(binary(&b).unwrap(), text(b"1").unwrap());
        // NaN
        assert_eq!(binary(&[0, 0, 0, 0, 0xC0, 0, 0, 0]).unwrap(), 0);
        // Zero: no digits.
        assert_eq!(binary(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap(), ZERO_HASH);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(text(b"").is_err());
        assert!(text(b".").is_err());
        assert!(text(b"1.2.3").is_err());
        assert!(text(b"1e").is_err());
        assert!(text(b"abc").is_err());
        assert!(text(b"1e99999999999").is_err());
        assert!(binary(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(binary(&[0, 0, 0, 0, 0x12, 0x34, 0, 0]).is_err());
    }
}
