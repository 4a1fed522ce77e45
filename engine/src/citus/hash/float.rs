//! `hashfloat4` / `hashfloat8`, ROUTING.md §3.6.
//!
//! Zero (including `-0`) hashes to 0 so that it equals `+0`; NaN is replaced by the canonical
//! NaN `0x7FF8000000000000` so that every NaN hashes alike; otherwise the float8 bits (float4 is
//! widened first, which is exact) are hashed as 8 little-endian bytes. Text is parsed directly
//! to the target width: float4 with an `f32` parse, never through `f64`, which could round twice
//! where `strtof` rounds once. Rust's parser is correctly rounded, like `strtod`/`strtof`.

use super::HashError;
use super::integer::fixed;
use super::lookup3::hash_bytes;

const CANONICAL_NAN: u64 = 0x7FF8_0000_0000_0000;

/// `hashfloat8(v)`.
pub fn hashfloat8(v: f64) -> u32 {
    if v == 0.0 {
        return 0;
    }
    let bits = if v.is_nan() {
        CANONICAL_NAN
    } else {
        v.to_bits()
    };
    hash_bytes(&bits.to_le_bytes())
}

/// `hashfloat4(v)`.
pub fn hashfloat4(v: f32) -> u32 {
    hashfloat8(f64::from(v))
}

fn utf8<'a>(s: &'a [u8], ty: &'static str) -> Result<&'a str, HashError> {
    std::str::from_utf8(s).map_err(|_| HashError::text(ty, "not a number"))
}

pub(super) fn float4_binary(b: &[u8]) -> Result<u32, HashError> {
    Ok(hashfloat4(f32::from_be_bytes(fixed(b, "real")?)))
}

pub(super) fn float8_binary(b: &[u8]) -> Result<u32, HashError> {
    Ok(hashfloat8(f64::from_be_bytes(fixed(
        b,
        "double precision",
    )?)))
}

pub(super) fn float4_text(s: &[u8]) -> Result<u32, HashError> {
    const TY: &str = "real";
    let v: f32 = utf8(s, TY)?
        .parse()
        .map_err(|_| HashError::text(TY, "not a number"))?;
    Ok(hashfloat4(v))
}

pub(super) fn float8_text(s: &[u8]) -> Result<u32, HashError> {
    const TY: &str = "double precision";
    let v: f64 = utf8(s, TY)?
        .parse()
        .map_err(|_| HashError::text(TY, "not a number"))?;
    Ok(hashfloat8(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_md_vectors() {
        assert_eq!(hashfloat8(1.5) as i32, 630860146);
        assert_eq!(hashfloat4(1.5) as i32, 630860146);
        assert_eq!(hashfloat8(-0.0), 0);
        assert_eq!(hashfloat8(f64::NAN) as i32, -1275764840);
        assert_eq!(hashfloat8(-f64::NAN) as i32, -1275764840);
        assert_eq!(hashfloat8(f64::INFINITY) as i32, -2133226302);
        assert_eq!(hashfloat8(-1.0) as i32, 1360688392);
        assert_eq!(float8_text(b"NaN").unwrap() as i32, -1275764840);
        assert_eq!(float8_text(b"Infinity").unwrap() as i32, -2133226302);
        assert_eq!(float4_text(b"-0").unwrap(), 0);
        assert_eq!(
            float8_text(b"1e+308").unwrap(),
            float8_text(b"1e308").unwrap()
        );
        assert!(float8_text(b"abc").is_err());
    }

    #[test]
    fn float4_parses_without_double_rounding() {
        // 1.00000005960464477539062500000000001 is just above the midpoint between 1 and the
        // next f32: strtof rounds up, f64-then-f32 rounds to the midpoint and then to even (1).
        let s = b"1.00000005960464477539062500000000001";
        assert_eq!(
            float4_text(s).unwrap(),
            hashfloat4(f32::from_bits(0x3F80_0001))
        );
    }
}
