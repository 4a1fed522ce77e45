//! The SQL verify runs: pure builders, so the exact text is unit-tested.
//!
//! **Row digest.** Each row is rendered as the text of `ROW(c1, c2, ...)` over the source's
//! replicated columns, addressed by name (a shard's column order may differ from the source's),
//! under identical output settings on every session ([`SESSION_SETTINGS`]). Its `md5` is cut to
//! the first 60 bits (15 hex digits, a non-negative `int8`), and a set of rows is summarised by
//! `count(*)` and the exact `sum` of those values (`numeric`: no overflow, no rounding).
//!
//! Why a sum and not `bit_xor`: both are independent of row order, but XOR cancels pairs, so a
//! duplicated row, or the same row present twice where it should be once, leaves the XOR
//! unchanged; the sum moves by the row's value and the count moves too. A changed, missing or
//! extra row goes unnoticed only when the sums collide, about 2^-60 per difference.
//!
//! **Buckets.** A hash-distributed table's source rows are grouped by the shard their
//! distribution value hashes to, in the same single scan: `hash_record(ROW(v))` is the hash of
//! `v`'s type with the type's default hash function (the first field of a record hash is the
//! field's own hash, `rowtypes.c`), which is what Citus routes by (ROUTING.md §2), and
//! `width_bucket(h, mins)` with the sorted array of shard minimums is a binary search over
//! exact `int4` comparisons (the array form of `width_bucket`, unlike the numeric form, does no
//! arithmetic). Shard ranges must cover the hash space without gaps, which Citus guarantees and
//! [`contiguous_minimums`] checks.
//!
//! Enum values hash by their label's OID, and OIDs differ between the source and the
//! coordinator: the source maps each label to the coordinator's OID with a `CASE` and hashes
//! that with `hashoid` (what `hashenum` computes).

use crate::citus::names::{quote_ident, quote_qualified};
use crate::source::quote::quote_literal;

/// Output settings every verify session runs with, on the source and on every node, so the
/// text of a row is the same on both sides.
pub const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; \
    SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'; \
    SET default_transaction_read_only = on; SET statement_timeout = 0";

/// `ROW("a", "b")::text`.
pub fn row_text(columns: &[String]) -> String {
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!("ROW({})::text", list.join(", "))
}

/// The 60-bit digest of one row, as a non-negative `int8`.
pub fn row_digest(columns: &[String]) -> String {
    format!(
        "('x' || substr(md5({}), 1, 15))::bit(60)::int8",
        row_text(columns)
    )
}

/// How a hash table's distribution value is hashed on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceHash {
    /// `hash_record(ROW(CAST(col AS type)))`; `cast` is the coordinator's base type when the
    /// source column's type differs from it.
    Builtin {
        /// Distribution column name.
        column: String,
        /// Type to cast to first, if any.
        cast: Option<String>,
    },
    /// `hashoid(CASE col::text WHEN label THEN oid ... END)` with the coordinator's label OIDs.
    Enum {
        /// Distribution column name.
        column: String,
        /// `(label, OID on the coordinator)`.
        labels: Vec<(String, u32)>,
    },
}

impl SourceHash {
    /// The SQL expression, an `int4` (NULL for a label the coordinator does not know).
    pub fn expr(&self) -> String {
        match self {
            SourceHash::Builtin { column, cast: None } => {
                format!("hash_record(ROW({}))", quote_ident(column))
            }
            SourceHash::Builtin {
                column,
                cast: Some(t),
            } => format!("hash_record(ROW(CAST({} AS {t})))", quote_ident(column)),
            SourceHash::Enum { column, labels } => {
                if labels.is_empty() {
                    return "NULL::int4".to_owned();
                }
                let arms: Vec<String> = labels
                    .iter()
                    .map(|(l, oid)| format!("WHEN {} THEN {oid}", quote_literal(l)))
                    .collect();
                format!(
                    "hashoid((CASE {}::text {} END)::oid)",
                    quote_ident(column),
                    arms.join(" ")
                )
            }
        }
    }
}

/// The minimums of `ranges` (sorted by minimum) when they cover `[i32::MIN, i32::MAX]`
/// without gaps or overlaps; `None` otherwise.
pub fn contiguous_minimums(ranges: &[(i32, i32)]) -> Option<Vec<i32>> {
    let first = ranges.first()?;
    let last = ranges.last()?;
    if first.0 != i32::MIN || last.1 != i32::MAX {
        return None;
    }
    for pair in ranges.windows(2) {
        if let [a, b] = pair
            && (a.1 >= b.0 || i64::from(a.1) + 1 != i64::from(b.0))
        {
            return None;
        }
    }
    Some(ranges.iter().map(|r| r.0).collect())
}

/// One scan of a source table: `(bucket, rows, sum)` per bucket. With a hash, `$1` is the
/// `int4[]` of shard minimums and buckets are 1-based shard indexes (NULL: no hash); without,
/// one row with bucket 1.
pub fn source_checksum(table: &str, columns: &[String], hash: Option<&SourceHash>) -> String {
    let digest = row_digest(columns);
    match hash {
        Some(h) => format!(
            "SELECT width_bucket({}, $1::int4[]), count(*), coalesce(sum({digest}), 0)::text \
             FROM {table} GROUP BY 1",
            h.expr()
        ),
        None => format!("SELECT 1, count(*), coalesce(sum({digest}), 0)::text FROM {table}"),
    }
}

/// One shard table on a node, for [`target_checksum`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardScan {
    /// `pg_dist_shard.shardid` (0 for a plain table).
    pub shard_id: i64,
    /// The shard table, qualified and quoted.
    pub table: String,
    /// Its hash range, when rows outside it can be counted on the node.
    pub range: Option<(i32, i32)>,
}

/// One round trip per node: `(shard id, rows, sum, rows hashing outside the shard's range)` for
/// each shard table, the last one NULL when not checked. `misplaced_column` is the distribution
/// column, hashed on the node itself (same types as the coordinator's, except enums).
pub fn target_checksum(
    shards: &[ShardScan],
    columns: &[String],
    misplaced_column: Option<&str>,
) -> String {
    let digest = row_digest(columns);
    let parts: Vec<String> = shards
        .iter()
        .map(|s| {
            let misplaced = match (misplaced_column, s.range) {
                (Some(col), Some((lo, hi))) => format!(
                    "count(*) FILTER (WHERE hash_record(ROW({})) NOT BETWEEN {lo} AND {hi})",
                    quote_ident(col)
                ),
                _ => "NULL::int8".to_owned(),
            };
            format!(
                "SELECT {}::int8, count(*), coalesce(sum({digest}), 0)::text, {misplaced} \
                 FROM {}",
                s.shard_id, s.table
            )
        })
        .collect();
    parts.join(" UNION ALL ")
}

/// The key of a row in a sample: the text of `ROW(key columns)`, or the row's md5 when the
/// table has no key (rows are then compared as a multiset).
fn sample_key(key: &[String], columns: &[String]) -> String {
    if key.is_empty() {
        format!("md5({})", row_text(columns))
    } else {
        row_text(key)
    }
}

/// `(key, md5)` of every row of one source bucket, sorted bytewise. `$1` is the minimums
/// array and `$2` the 1-based bucket when `hash` is given.
pub fn source_sample(
    table: &str,
    columns: &[String],
    key: &[String],
    hash: Option<&SourceHash>,
) -> String {
    let filter = match hash {
        Some(h) => format!(" WHERE width_bucket({}, $1::int4[]) = $2::int4", h.expr()),
        None => String::new(),
    };
    format!(
        "SELECT {k} COLLATE \"C\" AS k, md5({r}) COLLATE \"C\" AS m FROM {table}{filter} \
         ORDER BY 1, 2",
        k = sample_key(key, columns),
        r = row_text(columns),
    )
}

/// `(key, md5)` of every row of one shard table, sorted bytewise.
pub fn target_sample(shard_table: &str, columns: &[String], key: &[String]) -> String {
    format!(
        "SELECT {k} COLLATE \"C\" AS k, md5({r}) COLLATE \"C\" AS m FROM {shard_table} \
         ORDER BY 1, 2",
        k = sample_key(key, columns),
        r = row_text(columns),
    )
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    quote_qualified(schema, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn digest_addresses_columns_by_quoted_name() {
        assert_eq!(
            row_digest(&cols(&["id", "Name"])),
            "('x' || substr(md5(ROW(\"id\", \"Name\")::text), 1, 15))::bit(60)::int8"
        );
    }

    #[test]
    fn source_hash_expressions() {
        let plain = SourceHash::Builtin {
            column: "user_id".into(),
            cast: None,
        };
        assert_eq!(plain.expr(), "hash_record(ROW(\"user_id\"))");
        let cast = SourceHash::Builtin {
            column: "id".into(),
            cast: Some("bigint".into()),
        };
        assert_eq!(cast.expr(), "hash_record(ROW(CAST(\"id\" AS bigint)))");
        let e = SourceHash::Enum {
            column: "mood".into(),
            labels: vec![("o'k".into(), 16500), ("sad".into(), 16502)],
        };
        assert_eq!(
            e.expr(),
            "hashoid((CASE \"mood\"::text WHEN 'o''k' THEN 16500 WHEN 'sad' THEN 16502 END)::oid)"
        );
    }

    #[test]
    fn minimums_of_contiguous_ranges() {
        let r = crate::citus::router::uniform_ranges(4);
        assert_eq!(
            contiguous_minimums(&r),
            Some(vec![i32::MIN, -1073741824, 0, 1073741824])
        );
        assert_eq!(
            contiguous_minimums(&[(i32::MIN, i32::MAX)]),
            Some(vec![i32::MIN])
        );
        // a gap, an overlap, a hole at either end
        assert_eq!(contiguous_minimums(&[(i32::MIN, -5), (-3, i32::MAX)]), None);
        assert_eq!(contiguous_minimums(&[(i32::MIN, 5), (5, i32::MAX)]), None);
        assert_eq!(contiguous_minimums(&[(0, i32::MAX)]), None);
        assert_eq!(contiguous_minimums(&[(i32::MIN, 0)]), None);
        assert_eq!(contiguous_minimums(&[]), None);
    }

    #[test]
    fn target_query_unions_shards_and_counts_misplaced_rows() {
        let shards = [
            ShardScan {
                shard_id: 102008,
                table: "\"s\".\"t_102008\"".into(),
                range: Some((i32::MIN, -1)),
            },
            ShardScan {
                shard_id: 102009,
                table: "\"s\".\"t_102009\"".into(),
                range: Some((0, i32::MAX)),
            },
        ];
        let sql = target_checksum(&shards, &cols(&["k"]), Some("k"));
        assert_eq!(sql.matches(" UNION ALL ").count(), 1);
        assert!(sql.contains(
            "SELECT 102008::int8, count(*), coalesce(sum(('x' || substr(md5(ROW(\"k\")::text), \
             1, 15))::bit(60)::int8), 0)::text, count(*) FILTER (WHERE hash_record(ROW(\"k\")) \
             NOT BETWEEN -2147483648 AND -1) FROM \"s\".\"t_102008\""
        ));
        let unchecked = target_checksum(&shards[..1], &cols(&["k"]), None);
        assert!(unchecked.contains("NULL::int8 FROM"));
    }

    #[test]
    fn samples_without_a_key_use_the_row_digest() {
        let sql = target_sample("\"t\"", &cols(&["a", "b"]), &[]);
        assert_eq!(
            sql,
            "SELECT md5(ROW(\"a\", \"b\")::text) COLLATE \"C\" AS k, md5(ROW(\"a\", \"b\")::text) \
             COLLATE \"C\" AS m FROM \"t\" ORDER BY 1, 2"
        );
        let src = source_sample(
            "\"t\"",
            &cols(&["a", "b"]),
            &cols(&["a"]),
            Some(&SourceHash::Builtin {
                column: "a".into(),
                cast: None,
            }),
        );
        assert!(src.contains("WHERE width_bucket(hash_record(ROW(\"a\")), $1::int4[]) = $2::int4"));
        assert!(src.starts_with("SELECT ROW(\"a\")::text COLLATE \"C\" AS k"));
    }
}
