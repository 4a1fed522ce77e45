//! `interval_hash`, ROUTING.md §3.3: the interval's comparison value
//! `time + (month * 30 + day) * 86400000000` in 128-bit arithmetic, truncated to its low 64 bits,
//! then `hashint8`. So `'1 day'` and `'24 hours'` hash equally, as do `'1 mon'` and `'30 days'`.
//!
//! Binary form (`interval_send`): int64 microseconds, int32 days, int32 months. Text form: the
//! `IntervalStyle = postgres` output, e.g. `1 year 2 mons -3 days +04:05:06.789`, `00:00:00`,
//! `-1 days -00:00:01`; a lone number (as in `'0'::interval`) is read as seconds, the way
//! `interval_in` reads it. `infinity` / `-infinity` (PostgreSQL 17) map to the all-max / all-min
//! field values PostgreSQL uses for them.

use super::HashError;
use super::integer::{fixed, hashint8};

const TY: &str = "interval";
const USECS_PER_DAY: i128 = 86_400_000_000;

/// `interval_hash` of the three stored fields.
pub fn interval_hash(time: i64, day: i32, month: i32) -> u32 {
    let days = i128::from(month) * 30 + i128::from(day);
    let span = i128::from(time) + days * USECS_PER_DAY;
    hashint8(span as i64)
}

pub(super) fn binary(b: &[u8]) -> Result<u32, HashError> {
    let raw: [u8; 16] = fixed(b, TY)?;
    let [
        t0,
        t1,
        t2,
        t3,
        t4,
        t5,
        t6,
        t7,
        d0,
        d1,
        d2,
        d3,
        m0,
        m1,
        m2,
        m3,
    ] = raw;
    let time = i64::from_be_bytes([t0, t1, t2, t3, t4, t5, t6, t7]);
    let day = i32::from_be_bytes([d0, d1, d2, d3]);
    let month = i32::from_be_bytes([m0, m1, m2, m3]);
    Ok(interval_hash(time, day, month))
}

pub(super) fn text(s: &[u8]) -> Result<u32, HashError> {
    let (time, day, month) = parse(s)?;
    Ok(interval_hash(time, day, month))
}

fn err(reason: &'static str) -> HashError {
    HashError::text(TY, reason)
}

/// Parses postgres-style interval output into (microseconds, days, months).
pub(super) fn parse(s: &[u8]) -> Result<(i64, i32, i32), HashError> {
    match s {
        b"infinity" => return Ok((i64::MAX, i32::MAX, i32::MAX)),
        b"-infinity" => return Ok((i64::MIN, i32::MIN, i32::MIN)),
        _ => {}
    }
    let mut months: i64 = 0;
    let mut days: i64 = 0;
    let mut time: i64 = 0;
    let mut tokens = s.split(|&c| c == b' ').filter(|t| !t.is_empty()).peekable();
    if tokens.peek().is_none() {
        return Err(err("empty value"));
    }
    while let Some(tok) = tokens.next() {
        if tok.contains(&b':') {
            time = time.checked_add(clock(tok)?).ok_or(err("out of range"))?;
            continue;
        }
        let n = signed(tok)?;
        match tokens.next() {
            None => {
                // A lone number: seconds.
                time = n
                    .checked_mul(1_000_000)
                    .and_then(|v| v.checked_add(time))
                    .ok_or(err("out of range"))?;
            }
            Some(b"year" | b"years") => {
                months = n
                    .checked_mul(12)
                    .and_then(|v| v.checked_add(months))
                    .ok_or(err("out of range"))?;
            }
            Some(b"mon" | b"mons") => months = months.checked_add(n).ok_or(err("out of range"))?,
            Some(b"day" | b"days") => days = days.checked_add(n).ok_or(err("out of range"))?,
            Some(_) => return Err(err("unknown unit")),
        }
    }
    let day = i32::try_from(days).map_err(|_| err("days out of range"))?;
    let month = i32::try_from(months).map_err(|_| err("months out of range"))?;
    Ok((time, day, month))
}

fn signed(tok: &[u8]) -> Result<i64, HashError> {
    let (neg, digits) = match tok {
        [b'-', r @ ..] => (true, r),
        [b'+', r @ ..] => (false, r),
        _ => (false, tok),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(err("invalid number"));
    }
    let v = digits
        .iter()
        .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
    Ok(if neg { -v } else { v })
}

/// `[+-]H:MM[:SS[.ffffff]]`, hours of any width, as signed microseconds.
fn clock(tok: &[u8]) -> Result<i64, HashError> {
    let (neg, body) = match tok {
        [b'-', r @ ..] => (true, r),
        [b'+', r @ ..] => (false, r),
        _ => (false, tok),
    };
    let mut parts = body.splitn(3, |&c| c == b':');
    let h = signed(parts.next().ok_or(err("invalid time"))?)?;
    let m = signed(parts.next().ok_or(err("invalid time"))?)?;
    let sec_part = parts.next().unwrap_or(b"0");
    let (secs, frac) = match sec_part.iter().position(|&c| c == b'.') {
        Some(i) => (&sec_part[..i], &sec_part[i + 1..]),
        None => (sec_part, &[][..]),
    };
    let sec = signed(secs)?;
    if h < 0 || m < 0 || sec < 0 || m > 59 || sec > 59 || !frac.iter().all(u8::is_ascii_digit) {
        return Err(err("invalid time"));
    }
    let frac_us = if frac.len() <= 6 {
        frac.iter().enumerate().fold(0i64, |v, (k, d)| {
            v + i64::from(d - b'0') * 10i64.pow(5 - k as u32)
        })
    } else {
        let text = std::str::from_utf8(frac).map_err(|_| err("invalid time"))?;
        let f: f64 = format!("0.{text}")
            .parse()
            .map_err(|_| err("invalid time"))?;
        (f * 1e6).round_ties_even() as i64
    };
    let us = h
        .checked_mul(3_600_000_000)
        .and_then(|v| v.checked_add(m * 60_000_000 + sec * 1_000_000 + frac_us))
        .ok_or(err("out of range"))?;
    Ok(if neg { -us } else { us })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> i32 {
        text(s.as_bytes()).unwrap() as i32
    }

    #[test]
    fn routing_md_vectors() {
        assert_eq!(h("1 day"), -2053980660);
        assert_eq!(h("24:00:00"), -2053980660);
        assert_eq!(h("1 mon"), 1574789525);
        assert_eq!(h("30 days"), 1574789525);
        assert_eq!(h("0"), -272711505);
        assert_eq!(h("00:00:00"), -272711505);
    }

    #[test]
    fn postgres_style_output() {
        assert_eq!(
            parse(b"1 year 2 mons -3 days +04:05:06.789").unwrap(),
            (14_706_789_000, -3, 14)
        );
        assert_eq!(parse(b"-1 days -00:00:01").unwrap(), (-1_000_000, -1, 0));
        assert_eq!(parse(b"-1 years -2 mons").unwrap(), (0, 0, -14));
        assert_eq!(
            parse(b"123456:00:00").unwrap(),
            (123_456 * 3_600_000_000, 0, 0)
        );
        assert_eq!(parse(b"-00:00:00.000001").unwrap(), (-1, 0, 0));
        assert!(parse(b"").is_err());
        assert!(parse(b"1 fortnight").is_err());
        assert!(parse(b"1:70:00").is_err());
    }

    #[test]
    fn binary_matches_text() {
        let mut b = Vec::new();
        b.extend_from_slice(&14_706_789_000i64.to_be_bytes());
        b.extend_from_slice(&(-3i32).to_be_bytes());
        b.extend_from_slice(&14i32.to_be_bytes());
        assert_eq!(
            binary(&b).unwrap(),
            text(b"1 year 2 mons -3 days +04:05:06.789").unwrap()
        );
    }
}
