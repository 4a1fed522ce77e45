//! The router: distribution value → shard index, a pure function (ROUTING.md §2).
//!
//! ```text
//!  value ─► HashKernel ─► i32 hash ─► ShardRanges::find ─► shard index ─► CitusTable::shard(i)
//!                                      (uniform: arithmetic;            └─► placements ─► nodes
//!                                       otherwise: binary search)
//! ```
//!
//! The hot path returns a [`ShardIndex`] into the table's shard `Vec`; resolving it to shard
//! ids, names and nodes is left to [`crate::citus::CitusTable`] for display and batching.
//!
//! Citus precomputes the index arithmetically only when the stored ranges are *exactly* the
//! ranges `create_distributed_table` makes (`HasUniformHashDistribution`); after a split they are
//! not, and it binary-searches the stored ranges. [`ShardRanges::from_sorted`] does the same
//! check: uniform arithmetic is used only when every stored range equals the uniform one.

use crate::citus::hash::{HashError, HashKernel};

/// Index of a shard in its table's shard list (sorted by range minimum).
pub type ShardIndex = usize;

/// `HASH_TOKEN_COUNT`: the size of the int32 hash space.
const HASH_TOKEN_COUNT: u64 = 1 << 32;

/// Why a value could not be routed. Carries no part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// NULL in a hash distribution column (Citus: "the partition column ... cannot be NULL").
    #[error("the distribution column value cannot be NULL")]
    NullValue,
    /// The value could not be hashed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// No stored range covers the hash (impossible after topology validation).
    #[error("cannot find shard interval for hash value {0}")]
    NoShard(i32),
}

/// Why a set of shard ranges is unusable for hash routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A table with no shards.
    #[error("table has no shards")]
    Empty,
    /// `min > max`.
    #[error("shard range [{0}, {1}] is empty")]
    Inverted(i32, i32),
    /// The first range does not start at INT32_MIN.
    #[error("shard ranges start at {0}, not at -2147483648")]
    BadStart(i32),
    /// The last range does not end at INT32_MAX.
    #[error("shard ranges end at {0}, not at 2147483647")]
    BadEnd(i32),
    /// Hash values between two ranges belong to no shard.
    #[error("gap in shard ranges between {0} and {1}")]
    Gap(i32, i32),
    /// Two ranges share hash values.
    #[error("overlapping shard ranges at {0}")]
    Overlap(i32),
}

/// The hash ranges of one hash-distributed table, sorted by minimum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardRanges {
    /// The ranges `create_distributed_table` makes for `count` shards.
    Uniform {
        /// Number of shards.
        count: u32,
        /// `HASH_TOKEN_COUNT / count`.
        increment: u64,
    },
    /// Any other contiguous cover of the int32 space (after splits).
    Sorted {
        /// Inclusive minimum of each range.
        mins: Box<[i32]>,
        /// Inclusive maximum of each range.
        maxs: Box<[i32]>,
    },
}

/// The uniform ranges for `count` shards (ROUTING.md §2.2): `INT32_MIN + i * increment`, the
/// last range absorbing the remainder.
pub fn uniform_ranges(count: u32) -> Vec<(i32, i32)> {
    if count == 0 {
        return Vec::new();
    }
    let increment = HASH_TOKEN_COUNT / u64::from(count);
    (0..u64::from(count))
        .map(|i| {
            let min = i64::from(i32::MIN) + (i * increment) as i64;
            let max = if i + 1 == u64::from(count) {
                i64::from(i32::MAX)
            } else {
                min + increment as i64 - 1
            };
            (min as i32, max as i32)
        })
        .collect()
}

impl ShardRanges {
    /// The uniform ranges for `count` shards.
    pub fn uniform(count: u32) -> Result<Self, RangeError> {
        if count == 0 {
            return Err(RangeError::Empty);
        }
        Ok(ShardRanges::Uniform {
            count,
            increment: HASH_TOKEN_COUNT / u64::from(count),
        })
    }

    /// Validates ranges already sorted by minimum (ties by shard id, as Citus sorts them): they
    /// must cover `[INT32_MIN, INT32_MAX]` contiguously, without gaps or overlaps. Chooses the
    /// arithmetic fast path only when the ranges are exactly uniform.
    pub fn from_sorted(ranges: &[(i32, i32)]) -> Result<Self, RangeError> {
        let (&(first, _), &(_, last)) = match (ranges.first(), ranges.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(RangeError::Empty),
        };
        if first != i32::MIN {
            return Err(RangeError::BadStart(first));
        }
        for &(min, max) in ranges {
            if min > max {
                return Err(RangeError::Inverted(min, max));
            }
        }
        for pair in ranges.windows(2) {
            let (prev_max, next_min) = (pair[0].1, pair[1].0);
            match i64::from(next_min) - i64::from(prev_max) {
                1 => {}
                d if d > 1 => return Err(RangeError::Gap(prev_max, next_min)),
                _ => return Err(RangeError::Overlap(next_min)),
            }
        }
        if last != i32::MAX {
            return Err(RangeError::BadEnd(last));
        }
        let count = u32::try_from(ranges.len()).map_err(|_| RangeError::Overlap(first))?;
        if ranges == uniform_ranges(count).as_slice() {
            return ShardRanges::uniform(count);
        }
        Ok(ShardRanges::Sorted {
            mins: ranges.iter().map(|r| r.0).collect(),
            maxs: ranges.iter().map(|r| r.1).collect(),
        })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        match self {
            ShardRanges::Uniform { count, .. } => *count as usize,
            ShardRanges::Sorted { mins, .. } => mins.len(),
        }
    }

    /// Whether there are no shards (never true for a validated table).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the arithmetic fast path is in use.
    pub fn is_uniform(&self) -> bool {
        matches!(self, ShardRanges::Uniform { .. })
    }

    /// The shard index whose range contains `hash` (`FindShardIntervalIndex`).
    #[inline]
    pub fn find(&self, hash: i32) -> Option<ShardIndex> {
        match self {
            ShardRanges::Uniform { count, increment } => {
                let offset = (i64::from(hash) - i64::from(i32::MIN)) as u64;
                let idx = (offset / increment).min(u64::from(*count) - 1);
                Some(idx as usize)
            }
            ShardRanges::Sorted { mins, maxs } => {
                // The last range whose min <= hash; then check its max.
                let idx = mins.partition_point(|&m| m <= hash).checked_sub(1)?;
                (hash <= maxs[idx]).then_some(idx)
            }
        }
    }
}

/// How rows of one table are routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableRouter {
    /// Hash-distributed: hash the distribution column, then find its range.
    Hash {
        /// The distribution column's kernel.
        kernel: HashKernel,
        /// The table's ranges.
        ranges: ShardRanges,
    },
    /// Every row goes to shard 0: reference, single-shard, tenant, Citus local and plain
    /// PostgreSQL tables. The value is ignored (NULL is fine).
    Single,
}

impl TableRouter {
    /// Routes a value in binary send format; `None` is SQL NULL.
    #[inline]
    pub fn route_binary(&self, value: Option<&[u8]>) -> Result<ShardIndex, RouteError> {
        match self {
            TableRouter::Single => Ok(0),
            TableRouter::Hash { kernel, ranges } => {
                let h = kernel.hash_binary(value.ok_or(RouteError::NullValue)?)?;
                ranges.find(h).ok_or(RouteError::NoShard(h))
            }
        }
    }

    /// Routes a value in text output format; `None` is SQL NULL.
    #[inline]
    pub fn route_text(&self, value: Option<&[u8]>) -> Result<ShardIndex, RouteError> {
        match self {
            TableRouter::Single => Ok(0),
            TableRouter::Hash { kernel, ranges } => {
                let h = kernel.hash_text(value.ok_or(RouteError::NullValue)?)?;
                ranges.find(h).ok_or(RouteError::NoShard(h))
            }
        }
    }

    /// Routes an already computed hash value (Single tables: always 0).
    #[inline]
    pub fn route_hash(&self, hash: i32) -> Result<ShardIndex, RouteError> {
        match self {
            TableRouter::Single => Ok(0),
            TableRouter::Hash { ranges, .. } => ranges.find(hash).ok_or(RouteError::NoShard(hash)),
        }
    }

    /// The hash kernel, for hash-distributed tables.
    pub fn kernel(&self) -> Option<&HashKernel> {
        match self {
            TableRouter::Hash { kernel, .. } => Some(kernel),
            TableRouter::Single => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_ranges_match_citus_examples() {
        let r32 = uniform_ranges(32);
        assert_eq!(r32[0], (-2147483648, -2013265921));
        assert_eq!(r32[1], (-2013265920, -1879048193));
        assert_eq!(r32[15], (-134217728, -1));
        assert_eq!(r32[16], (0, 134217727));
        assert_eq!(r32[31], (2013265920, 2147483647));
        assert_eq!(
            uniform_ranges(3),
            [
                (-2147483648, -715827884),
                (-715827883, 715827881),
                (715827882, 2147483647)
            ]
        );
        assert_eq!(uniform_ranges(1), [(i32::MIN, i32::MAX)]);
    }

    /// The arithmetic index equals the binary search at every range boundary.
    #[test]
    fn uniform_arithmetic_equals_binary_search() {
        for n in (1..=130).chain([255, 256, 1000, 4096, 7919, 64000]) {
            let ranges = uniform_ranges(n);
            let uniform = ShardRanges::uniform(n).unwrap();
            let sorted = ShardRanges::Sorted {
                mins: ranges.iter().map(|r| r.0).collect(),
                maxs: ranges.iter().map(|r| r.1).collect(),
            };
            for (i, &(min, max)) in ranges.iter().enumerate() {
                for h in [min, max, min.saturating_add(1), max.saturating_sub(1)] {
                    assert_eq!(uniform.find(h), Some(i), "n {n} h {h}");
                    assert_eq!(sorted.find(h), Some(i), "n {n} h {h}");
                }
            }
        }
    }

    #[test]
    fn from_sorted_detects_uniform_and_split_ranges() {
        assert!(
            ShardRanges::from_sorted(&uniform_ranges(7))
                .unwrap()
                .is_uniform()
        );
        // Split shard 0 of 4 at -2000000000.
        let mut r = uniform_ranges(4);
        let (min, max) = r[0];
        r.splice(0..1, [(min, -2_000_000_000), (-1_999_999_999, max)]);
        let split = ShardRanges::from_sorted(&r).unwrap();
        assert!(!split.is_uniform());
        assert_eq!(split.find(i32::MIN), Some(0));
        assert_eq!(split.find(-2_000_000_000), Some(0));
        assert_eq!(split.find(-1_999_999_999), Some(1));
        assert_eq!(split.find(0), Some(3));
        assert_eq!(split.find(i32::MAX), Some(4));
        // Tenant isolation: a single-value range.
        let iso = [(i32::MIN, 41), (42, 42), (43, i32::MAX)];
        let iso = ShardRanges::from_sorted(&iso).unwrap();
        assert_eq!(
            (iso.find(41), iso.find(42), iso.find(43)),
            (Some(0), Some(1), Some(2))
        );
    }

    #[test]
    fn from_sorted_rejects_bad_covers() {
        use RangeError::*;
        assert_eq!(ShardRanges::from_sorted(&[]), Err(Empty));
        assert_eq!(ShardRanges::from_sorted(&[(0, i32::MAX)]), Err(BadStart(0)));
        assert_eq!(ShardRanges::from_sorted(&[(i32::MIN, 0)]), Err(BadEnd(0)));
        assert_eq!(
            ShardRanges::from_sorted(&[(i32::MIN, 0), (2, i32::MAX)]),
            Err(Gap(0, 2))
        );
        assert_eq!(
            ShardRanges::from_sorted(&[(i32::MIN, 5), (5, i32::MAX)]),
            Err(Overlap(5))
        );
        assert_eq!(
            ShardRanges::from_sorted(&[(i32::MIN, 5), (9, 6), (7, i32::MAX)]),
            Err(Inverted(9, 6))
        );
    }

    /// multi_distribution_metadata.out: int values 1..4 with 4 shards -> indexes 0, 3, 1, 1.
    /// ROUTING.md §3.9: bigint 1..5 with 32 shards -> 1, 24, 15, 8, 6.
    #[test]
    fn citus_regression_routing() {
        let r = TableRouter::Hash {
            kernel: HashKernel::Int4,
            ranges: ShardRanges::uniform(4).unwrap(),
        };
        let got: Vec<_> = (1..=4)
            .map(|v: i32| r.route_binary(Some(&v.to_be_bytes())).unwrap())
            .collect();
        assert_eq!(got, [0, 3, 1, 1]);
        let r = TableRouter::Hash {
            kernel: HashKernel::Int8,
            ranges: ShardRanges::uniform(32).unwrap(),
        };
        let got: Vec<_> = (1..=5)
            .map(|v: i64| r.route_text(Some(v.to_string().as_bytes())).unwrap())
            .collect();
        assert_eq!(got, [1, 24, 15, 8, 6]);
        assert_eq!(r.route_binary(None), Err(RouteError::NullValue));
        assert_eq!(TableRouter::Single.route_text(None), Ok(0));
    }

    /// Text arrays: '{a,b,c}' -> index 3 and '{d,e,f}' -> index 1 of 4.
    #[test]
    fn citus_regression_text_array_routing() {
        let r = TableRouter::Hash {
            kernel: HashKernel::Array(std::sync::Arc::new(HashKernel::Text)),
            ranges: ShardRanges::uniform(4).unwrap(),
        };
        assert_eq!(r.route_text(Some(b"{a,b,c}")), Ok(3));
        assert_eq!(r.route_text(Some(b"{d,e,f}")), Ok(1));
    }
}
