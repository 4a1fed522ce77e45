//! Log sequence numbers as a typed value.
//!
//! PostgreSQL names every byte position in its write-ahead log with a 64-bit LSN and prints it as
//! two 32-bit halves in uppercase hex, `X/X` (`0/16B3748`), with no leading zeros. A bare `u64`
//! invites mixing LSNs with byte counts or row counts; the [`Lsn`] newtype keeps positions and
//! distances apart, orders correctly and formats exactly as `pg_lsn` does, so log lines and SQL
//! (`'0/16B3748'::pg_lsn`) agree.

use std::fmt;
use std::str::FromStr;

/// A position in PostgreSQL's write-ahead log (`XLogRecPtr`, SQL type `pg_lsn`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `InvalidXLogRecPtr`: PostgreSQL's "no position" marker, `0/0`.
    pub const INVALID: Lsn = Lsn(0);

    /// The largest representable position, `FFFFFFFF/FFFFFFFF`.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// The raw 64-bit value.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether this is a real position (not [`Lsn::INVALID`]).
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// The position `bytes` further along, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }

    /// The position `bytes` earlier, or `None` if that would be before `0/0`.
    #[inline]
    pub const fn checked_sub(self, bytes: u64) -> Option<Lsn> {
        match self.0.checked_sub(bytes) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }

    /// The position `bytes` further along, clamped at [`Lsn::MAX`].
    #[inline]
    pub const fn saturating_add(self, bytes: u64) -> Lsn {
        Lsn(self.0.saturating_add(bytes))
    }

    /// The number of WAL bytes from `earlier` to `self`, or `None` if `earlier` is after `self`.
    ///
    /// This is what `pg_wal_lsn_diff(self, earlier)` returns when the result is not negative, and
    /// is the usual way to express replication lag in bytes.
    #[inline]
    pub const fn bytes_since(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
}

impl From<u64> for Lsn {
    #[inline]
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    #[inline]
    fn from(lsn: Lsn) -> Self {
        lsn.0
    }
}

impl fmt::Display for Lsn {
    /// Formats as PostgreSQL does: `{high:X}/{low:X}`, e.g. `0/16B3748`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// Why a string is not a valid LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input syntax for type pg_lsn: \"{input}\"")]
pub struct ParseLsnError {
    input: String,
}

impl ParseLsnError {
    /// The rejected input, truncated to 64 bytes (at a character boundary).
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// Parses one half of an LSN: 1 to 8 hex digits, either case, nothing else.
fn parse_half(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Parses `X/X` with 1 to 8 hex digits on each side, as `pg_lsn` input does (either case;
    /// no signs, spaces or `0x` prefixes).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s
            .split_once('/')
            .and_then(|(hi, lo)| Some((parse_half(hi)?, parse_half(lo)?)));
        match parsed {
            Some((hi, lo)) => Ok(Lsn((hi << 32) | lo)),
            None => {
                let mut end = s.len().min(64);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                Err(ParseLsnError {
                    input: s[..end].to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_like_postgres() {
        assert_eq!(Lsn(0x16B3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!(format!("{:?}", Lsn(0xAB_0000_00CD)), "Lsn(AB/CD)");
    }

    #[test]
    fn parses_postgres_forms() {
        assert_eq!("0/16B3748".parse::<Lsn>(), Ok(Lsn(0x16B3748)));
        assert_eq!("0/16b3748".parse::<Lsn>(), Ok(Lsn(0x16B3748)));
        assert_eq!("00000001/00000000".parse::<Lsn>(), Ok(Lsn(1 << 32)));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>(), Ok(Lsn::MAX));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "123456789/0",
            "0/123456789",
            " 0/1",
            "0/1 ",
            "+0/1",
            "0x0/1",
            "g/1",
            "0/-1",
            "0//1",
            "é/1",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert_eq!(err.input(), bad);
            assert_eq!(
                err.to_string(),
                format!("invalid input syntax for type pg_lsn: \"{bad}\"")
            );
        }
        let long = "é".repeat(100);
        assert_eq!(long.parse::<Lsn>().unwrap_err().input(), "é".repeat(32));
    }

    #[test]
    fn arithmetic() {
        let a = Lsn(100);
        assert_eq!(a.checked_add(28), Some(Lsn(128)));
        assert_eq!(Lsn::MAX.checked_add(1), None);
        assert_eq!(Lsn::MAX.saturating_add(5), Lsn::MAX);
        assert_eq!(a.checked_sub(100), Some(Lsn::INVALID));
        assert_eq!(a.checked_sub(101), None);
        assert_eq!(a.bytes_since(Lsn(40)), Some(60));
        assert_eq!(Lsn(40).bytes_since(a), None);
        assert!(!Lsn::INVALID.is_valid());
        assert!(a.is_valid());
        assert!(Lsn(1 << 32) > Lsn(0xFFFF_FFFF));
        assert_eq!(u64::from(Lsn::from(7u64)), 7);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(v in any::<u64>()) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
            prop_assert_eq!(lsn.to_string().to_lowercase().parse::<Lsn>(), Ok(lsn));
        }

        #[test]
        fn order_matches_u64(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(Lsn(a).cmp(&Lsn(b)), a.cmp(&b));
        }
    }
}
