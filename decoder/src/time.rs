//! PostgreSQL wire timestamps.
//!
//! Every time in the replication protocol and in pgoutput (send time, commit time, client time)
//! is an `int64` count of microseconds since the PostgreSQL epoch, 2000-01-01 00:00:00 UTC.
//! [`PgTimestamp`] keeps that raw value (so decoding never fails and re-encoding is exact) and
//! converts to and from [`SystemTime`] at the edges.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the Unix epoch (1970-01-01) to the PostgreSQL epoch (2000-01-01).
const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Microseconds since 2000-01-01 00:00:00 UTC, as sent on the wire (`TimestampTz`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// The PostgreSQL epoch itself.
    pub const EPOCH: PgTimestamp = PgTimestamp(0);

    /// The raw microsecond count.
    #[inline]
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current wall-clock time (what a standby puts in its status updates).
    pub fn now() -> PgTimestamp {
        PgTimestamp::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`], saturating at the ends of the `i64` range.
    pub fn from_system_time(t: SystemTime) -> PgTimestamp {
        let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_UNIX_SECS);
        match t.duration_since(pg_epoch) {
            Ok(after) => PgTimestamp(i64::try_from(after.as_micros()).unwrap_or(i64::MAX)),
            Err(before) => {
                let micros = i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX);
                PgTimestamp(-micros)
            }
        }
    }

    /// Converts to a [`SystemTime`], or `None` if the platform cannot represent it.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let pg_epoch = UNIX_EPOCH.checked_add(Duration::from_secs(PG_EPOCH_UNIX_SECS))?;
        let delta = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            pg_epoch.checked_add(delta)
        } else {
            pg_epoch.checked_sub(delta)
        }
    }
}

impl fmt::Debug for PgTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTimestamp({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_2000_01_01() {
        let t = PgTimestamp::EPOCH.to_system_time().unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_secs(946_684_800)
        );
        assert_eq!(PgTimestamp::from_system_time(t), PgTimestamp(0));
    }

    #[test]
    fn converts_both_ways() {
        // 2024-01-01 00:00:00 UTC = 1704067200 Unix seconds.
        let t = UNIX_EPOCH + Duration::from_secs(1_704_067_200) + Duration::from_micros(5);
        let pg = PgTimestamp::from_system_time(t);
        assert_eq!(
            pg,
            PgTimestamp((1_704_067_200 - 946_684_800) * 1_000_000 + 5)
        );
        assert_eq!(pg.to_system_time(), Some(t));
        let before = UNIX_EPOCH + Duration::from_secs(1);
        let pg = PgTimestamp::from_system_time(before);
        assert_eq!(pg.as_micros(), -(946_684_799 * 1_000_000));
        assert_eq!(pg.to_system_time(), Some(before));
    }

    #[test]
    fn now_is_after_2020() {
        assert!(PgTimestamp::now() > PgTimestamp(631_152_000_000_000));
    }
}
