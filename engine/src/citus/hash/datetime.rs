//! Date and time kernels: `date` (`hashint4` of days since 2000-01-01), `time`, `timestamp` and
//! `timestamptz` (`hashint8` of microseconds), `timetz` (`timetz_hash`), ROUTING.md §3.3.
//!
//! The binary forms are those integers, big-endian. The text forms are what the server prints
//! with `DateStyle = ISO, MDY`, `TimeZone = UTC` and `IntervalStyle = postgres`, which the source
//! connection sets: `2024-01-01`, `0044-03-15 BC`, `12:30:00.5`,
//! `2024-01-01 12:30:00.123456+00`, `infinity`. Timestamptz offsets other than `+00`
//! (`+05:30`, `-03:00:15`) are accepted too, as is a fraction longer than six digits (rounded
//! the way `ParseFractionalSecond` rounds: `rint(frac * 1e6)`).

use super::HashError;
use super::integer::{fixed, hashint4, hashint8};
use super::lookup3::hash_uint32;

const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;
const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;

/// `date2j`: Julian day number of a proleptic Gregorian date (astronomical year numbering).
fn date2j(year: i64, month: i64, day: i64) -> i64 {
    let (y, m) = if month > 2 {
        (year + 4800, month + 1)
    } else {
        (year + 4799, month + 13)
    };
    let century = y / 100;
    let mut julian = y * 365 - 32167;
    julian += y / 4 - century + century / 4;
    julian + 7834 * m / 256 + day
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// A forward-only reader over ASCII text.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    ty: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a [u8], ty: &'static str) -> Self {
        Cursor { s, i: 0, ty }
    }

    fn err(&self, reason: &'static str) -> HashError {
        HashError::text(self.ty, reason)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn require(&mut self, c: u8) -> Result<(), HashError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err("unexpected character"))
        }
    }

    /// An unsigned decimal number of 1..=max_len digits.
    fn number(&mut self, max_len: usize) -> Result<i64, HashError> {
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.i - start == max_len {
                return Err(self.err("field out of range"));
            }
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("digit expected"));
        }
        Ok(v)
    }

    /// An optional `.ddd` fraction of a second, in microseconds.
    fn fraction_usecs(&mut self) -> Result<i64, HashError> {
        if !self.eat(b'.') {
            return Ok(0);
        }
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.s[start..self.i];
        if digits.len() <= 6 {
            let mut v: i64 = 0;
            for (k, d) in digits.iter().enumerate() {
                v += i64::from(d - b'0') * 10i64.pow(5 - k as u32);
            }
            return Ok(v);
        }
        // ParseFractionalSecond: strtod, then rint(frac * 1000000) (ties to even).
        let text = std::str::from_utf8(&self.s[start - 1..self.i])
            .map_err(|_| self.err("invalid fraction"))?;
        let frac: f64 = format!("0{text}")
            .parse()
            .map_err(|_| self.err("invalid fraction"))?;
        Ok((frac * 1e6).round_ties_even() as i64)
    }

    fn rest(&self) -> &'a [u8] {
        &self.s[self.i..]
    }

    fn done(&self) -> Result<(), HashError> {
        if self.i == self.s.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters"))
        }
    }
}

/// `YYYY-MM-DD` (year of any width) as days since 2000-01-01; `bc` applies the era.
fn read_date(c: &mut Cursor<'_>) -> Result<(i64, i64, i64), HashError> {
    let year = c.number(9)?;
    c.require(b'-')?;
    let month = c.number(2)?;
    c.require(b'-')?;
    let day = c.number(2)?;
    Ok((year, month, day))
}

fn days_since_epoch(
    year: i64,
    month: i64,
    day: i64,
    bc: bool,
    ty: &'static str,
) -> Result<i64, HashError> {
    if year == 0 && bc {
        return Err(HashError::text(ty, "year 0 BC does not exist"));
    }
    let year = if bc { 1 - year } else { year };
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) {
        return Err(HashError::text(ty, "month out of range"));
    }
    let max_day = DAYS[(month - 1) as usize] + i64::from(month == 2 && is_leap(year));
    if day < 1 || day > max_day {
        return Err(HashError::text(ty, "day out of range"));
    }
    Ok(date2j(year, month, day) - POSTGRES_EPOCH_JDATE)
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight.
fn read_time(c: &mut Cursor<'_>) -> Result<i64, HashError> {
    let h = c.number(2)?;
    c.require(b':')?;
    let m = c.number(2)?;
    let s = if c.eat(b':') { c.number(2)? } else { 0 };
    let frac = c.fraction_usecs()?;
    if h > 24 || m > 59 || s > 60 {
        return Err(c.err("time field out of range"));
    }
    Ok(((h * 60 + m) * 60 + s) * USECS_PER_SEC + frac)
}

/// `+HH[:MM[:SS]]` / `-HH...` as seconds east of UTC.
fn read_offset(c: &mut Cursor<'_>) -> Result<i64, HashError> {
    let sign = match c.peek() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(c.err("time zone offset expected")),
    };
    c.i += 1;
    let h = c.number(2)?;
    let m = if c.eat(b':') { c.number(2)? } else { 0 };
    let s = if c.eat(b':') { c.number(2)? } else { 0 };
    if m > 59 || s > 59 {
        return Err(c.err("time zone offset out of range"));
    }
    Ok(sign * ((h * 60 + m) * 60 + s))
}

fn read_era(c: &mut Cursor<'_>) -> bool {
    if c.rest() == b" BC" {
        c.i += 3;
        true
    } else {
        false
    }
}

/// Days since 2000-01-01 of `date_out` text (±infinity = INT32_MIN/MAX).
pub(super) fn date_days(s: &[u8]) -> Result<i32, HashError> {
    const TY: &str = "date";
    match s {
        b"infinity" => return Ok(i32::MAX),
        b"-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let mut c = Cursor::new(s, TY);
    let (y, m, d) = read_date(&mut c)?;
    let bc = read_era(&mut c);
    c.done()?;
    let days = days_since_epoch(y, m, d, bc, TY)?;
    i32::try_from(days).map_err(|_| HashError::text(TY, "date out of range"))
}

/// Microseconds since 2000-01-01 of `timestamp_out` / `timestamptz_out` text.
pub(super) fn timestamp_usecs(s: &[u8], with_tz: bool) -> Result<i64, HashError> {
    let ty = if with_tz {
        "timestamp with time zone"
    } else {
        "timestamp without time zone"
    };
    match s {
        b"infinity" => return Ok(i64::MAX),
        b"-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let mut c = Cursor::new(s, ty);
    let (y, m, d) = read_date(&mut c)?;
    c.require(b' ')?;
    let time = read_time(&mut c)?;
    let offset = if with_tz { read_offset(&mut c)? } else { 0 };
    let bc = read_era(&mut c);
    c.done()?;
    let days = days_since_epoch(y, m, d, bc, ty)?;
    days.checked_mul(USECS_PER_DAY)
        .and_then(|v| v.checked_add(time))
        .and_then(|v| v.checked_sub(offset * USECS_PER_SEC))
        .ok_or(HashError::text(ty, "timestamp out of range"))
}

pub(super) fn date_binary(b: &[u8]) -> Result<u32, HashError> {
    Ok(hashint4(i32::from_be_bytes(fixed(b, "date")?)))
}

pub(super) fn date_text(s: &[u8]) -> Result<u32, HashError> {
    Ok(hashint4(date_days(s)?))
}

/// time, timestamp and timestamptz all send an int64 and hash it with `hashint8`.
pub(super) fn int64_binary(b: &[u8], ty: &'static str) -> Result<u32, HashError> {
    Ok(hashint8(i64::from_be_bytes(fixed(b, ty)?)))
}

/// Microseconds since midnight of `time_out` text.
pub(super) fn time_usecs(s: &[u8]) -> Result<i64, HashError> {
    let mut c = Cursor::new(s, "time without time zone");
    let t = read_time(&mut c)?;
    c.done()?;
    Ok(t)
}

pub(super) fn time_text(s: &[u8]) -> Result<u32, HashError> {
    Ok(hashint8(time_usecs(s)?))
}

pub(super) fn timestamp_text(s: &[u8], with_tz: bool) -> Result<u32, HashError> {
    Ok(hashint8(timestamp_usecs(s, with_tz)?))
}

/// `timetz_hash`: `hashint8(time) ^ hash_uint32(zone)`, zone in seconds **west** of UTC.
fn timetz_hash(time: i64, zone: i32) -> u32 {
    hashint8(time) ^ hash_uint32(zone as u32)
}

pub(super) fn timetz_binary(b: &[u8]) -> Result<u32, HashError> {
    let raw: [u8; 12] = fixed(b, "time with time zone")?;
    let [t0, t1, t2, t3, t4, t5, t6, t7, z0, z1, z2, z3] = raw;
    let time = i64::from_be_bytes([t0, t1, t2, t3, t4, t5, t6, t7]);
    let zone = i32::from_be_bytes([z0, z1, z2, z3]);
    Ok(timetz_hash(time, zone))
}

pub(super) fn timetz_text(s: &[u8]) -> Result<u32, HashError> {
    let mut c = Cursor::new(s, "time with time zone");
    let t = read_time(&mut c)?;
    let east = read_offset(&mut c)?;
    c.done()?;
    let zone = i32::try_from(-east).map_err(|_| c.err("time zone offset out of range"))?;
    Ok(timetz_hash(t, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_md_vectors() {
        assert_eq!(date_text(b"1997-08-08").unwrap() as i32, -499701663);
        assert_eq!(date_text(b"2024-01-01").unwrap() as i32, -1661621463);
        assert_eq!(
            timestamp_usecs(b"2024-01-01 12:30:00.123456", false).unwrap(),
            757_427_400_123_456
        );
        assert_eq!(
            timestamp_text(b"2024-01-01 12:30:00.123456", false).unwrap() as i32,
            -1338274274
        );
    }

    #[test]
    fn dates() {
        assert_eq!(date_days(b"2000-01-01").unwrap(), 0);
        assert_eq!(date_days(b"1999-12-31").unwrap(), -1);
        assert_eq!(date_days(b"2000-03-01").unwrap(), 60);
        assert_eq!(date_days(b"0001-01-01").unwrap(), -730119);
        assert_eq!(date_days(b"0001-12-31 BC").unwrap(), -730120);
        assert_eq!(date_days(b"4714-11-24 BC").unwrap(), -2451545);
        assert_eq!(date_days(b"infinity").unwrap(), i32::MAX);
        assert!(date_days(b"2023-02-29").is_err());
        assert!(date_days(b"2024-13-01").is_err());
        assert!(date_days(b"0000-01-01 BC").is_err());
        assert!(date_days(b"2024-01-01x").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp_usecs(b"2000-01-01 00:00:00", false).unwrap(), 0);
        assert_eq!(timestamp_usecs(b"2000-01-01 00:00:00+00", true).unwrap(), 0);
        assert_eq!(
            timestamp_usecs(b"2000-01-01 05:30:00+05:30", true).unwrap(),
            0
        );
        assert_eq!(
            timestamp_usecs(b"1999-12-31 20:59:45-03:00:15", true).unwrap(),
            0
        );
        assert_eq!(
            timestamp_usecs(b"2000-01-01 00:00:00.5", false).unwrap(),
            500_000
        );
        assert_eq!(
            timestamp_usecs(b"2000-01-01 00:00:00.0000005", false).unwrap(),
            0
        );
        assert_eq!(
            timestamp_usecs(b"2000-01-01 00:00:00.0000015", false).unwrap(),
            2
        );
        assert_eq!(
            timestamp_usecs(b"0044-03-15 12:00:00+00 BC", true).unwrap(),
            timestamp_usecs(b"0044-03-15 12:00:00 BC", false).unwrap()
        );
        assert_eq!(timestamp_usecs(b"-infinity", true).unwrap(), i64::MIN);
        assert_eq!(
            timestamp_usecs(b"10000-01-01 00:00:00", false).unwrap() / USECS_PER_DAY,
            2_921_940
        );
        assert!(timestamp_usecs(b"2000-01-01 00:00:00", true).is_err());
        assert!(timestamp_usecs(b"2000-01-01", false).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(time_text(b"00:00:00").unwrap(), hashint8(0));
        assert_eq!(time_text(b"24:00:00").unwrap(), hashint8(USECS_PER_DAY));
        assert_eq!(
            time_text(b"12:30:00.123").unwrap(),
            hashint8(45_000_123_000)
        );
        assert!(time_text(b"12:60:00").is_err());
        // '12:30+02': local time 12:30, zone -7200 (seconds west).
        let mut raw = Vec::new();
        raw.extend_from_slice(&45_000_000_000i64.to_be_bytes());
        raw.extend_from_slice(&(-7200i32).to_be_bytes());
        assert_eq!(
            timetz_text(b"12:30:00+02").unwrap(),
            timetz_binary(&raw).unwrap()
        );
    }
}
