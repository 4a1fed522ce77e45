//! What verify found, as data (serialised for `--json`) and as text for a person.

use std::io::{self, Write};

use serde::Serialize;

use crate::citus::TableKind;

/// Row count and checksum of a set of rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Rows.
    pub rows: i64,
    /// Sum of the rows' 60-bit digests, exact, as decimal text.
    pub sum: String,
}

impl Digest {
    /// The digest of no rows.
    pub fn empty() -> Digest {
        Digest {
            rows: 0,
            sum: "0".to_owned(),
        }
    }
}

/// Keys of differing rows in one shard placement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// The key columns the keys are made of (empty: rows are identified by their md5).
    pub key_columns: Vec<String>,
    /// Rows on the source, not on the target.
    pub missing_on_target: Vec<String>,
    /// Rows on the target, not on the source.
    pub extra_on_target: Vec<String>,
    /// Rows with the same key and different contents.
    pub different: Vec<String>,
    /// More differences exist than were listed.
    pub truncated: bool,
}

/// One shard placement that differs from the source's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardMismatch {
    /// `pg_dist_shard.shardid` (0 for a plain table).
    pub shard_id: i64,
    /// The shard table, qualified and quoted.
    pub shard_table: String,
    /// `host:port` of the node holding this placement.
    pub node: String,
    /// Hash range of the shard.
    pub range: Option<(i32, i32)>,
    /// The source's rows that belong in this shard.
    pub source: Digest,
    /// The placement's rows.
    pub target: Digest,
    /// Rows in the placement whose distribution value hashes outside its range (when checked).
    pub misplaced_rows: Option<i64>,
    /// Differing keys, with `--sample`.
    pub sample: Option<Sample>,
}

/// How a table compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// Every placement equals the source.
    Equal,
    /// At least one placement differs.
    Mismatch,
    /// The table could not be compared.
    Error,
}

/// The result for one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// `schema.name`.
    pub table: String,
    /// Distribution kind on the target.
    pub kind: TableKind,
    /// Outcome.
    pub status: TableStatus,
    /// Source rows.
    pub source_rows: Option<i64>,
    /// Target rows (one copy of each shard).
    pub target_rows: Option<i64>,
    /// Shards of the table.
    pub shards: usize,
    /// Differing placements.
    pub mismatches: Vec<ShardMismatch>,
    /// Source rows the target cannot route (a label the coordinator's enum lacks).
    pub unroutable_source_rows: i64,
    /// Why the table could not be compared.
    pub error: Option<String>,
    /// Notes that are not differences.
    pub warnings: Vec<String>,
}

/// The whole result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Every table equal and no errors.
    pub equal: bool,
    /// Per table, in the order asked.
    pub tables: Vec<TableReport>,
    /// Wall time.
    pub elapsed_ms: u64,
}

impl VerifyReport {
    /// Tables with differences.
    pub fn mismatched(&self) -> impl Iterator<Item = &TableReport> {
        self.tables
            .iter()
            .filter(|t| t.status == TableStatus::Mismatch)
    }

    /// Tables that could not be compared.
    pub fn errors(&self) -> impl Iterator<Item = &TableReport> {
        self.tables
            .iter()
            .filter(|t| t.status == TableStatus::Error)
    }

    /// The process exit status: 0 equal, 1 differences, 2 a table could not be compared.
    pub fn exit_status(&self) -> u8 {
        if self.errors().next().is_some() {
            2
        } else if self.equal {
            0
        } else {
            1
        }
    }

    /// Writes the report for a person.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let width = self.tables.iter().map(|t| t.table.len()).max().unwrap_or(0);
        for t in &self.tables {
            write_table(t, width, out)?;
        }
        let bad = self.mismatched().count();
        let errors = self.errors().count();
        let total = self.tables.len();
        let secs = self.elapsed_ms as f64 / 1000.0;
        match (bad, errors) {
            (0, 0) => writeln!(out, "all {total} table(s) equal ({secs:.1} s)"),
            _ => writeln!(
                out,
                "{bad} of {total} table(s) differ, {errors} could not be compared ({secs:.1} s)"
            ),
        }
    }
}

fn write_table(t: &TableReport, width: usize, out: &mut dyn Write) -> io::Result<()> {
    let rows = |n: Option<i64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let shards = match t.kind {
        TableKind::Plain => String::new(),
        kind => format!(", {}, {} shard(s)", kind.as_str(), t.shards),
    };
    match t.status {
        TableStatus::Equal => writeln!(
            out,
            "equal     {:width$}  {} rows{shards}",
            t.table,
            rows(t.source_rows)
        )?,
        TableStatus::Mismatch => writeln!(
            out,
            "MISMATCH  {:width$}  source {} rows, target {} rows{shards}",
            t.table,
            rows(t.source_rows),
            rows(t.target_rows)
        )?,
        TableStatus::Error => writeln!(
            out,
            "ERROR     {:width$}  {}",
            t.table,
            t.error.as_deref().unwrap_or("unknown error")
        )?,
    }
    if t.unroutable_source_rows > 0 {
        writeln!(
            out,
            "          {} source row(s) have a distribution value the coordinator cannot route",
            t.unroutable_source_rows
        )?;
    }
    for m in &t.mismatches {
        let what = if m.source.rows == m.target.rows {
            "same row count, contents differ".to_owned()
        } else {
            format!(
                "source {} rows, target {} rows",
                m.source.rows, m.target.rows
            )
        };
        let shard = if m.shard_id == 0 {
            format!("table {}", m.shard_table)
        } else {
            format!("shard {} {}", m.shard_id, m.shard_table)
        };
        writeln!(out, "          {shard} on {}: {what}", m.node)?;
        if let Some(n) = m.misplaced_rows.filter(|n| *n > 0) {
            writeln!(
                out,
                "            {n} row(s) in this shard hash outside its range: they belong in \
                 another shard"
            )?;
        }
        if let Some(s) = &m.sample {
            write_sample(s, out)?;
        }
    }
    for w in &t.warnings {
        writeln!(out, "          warning: {w}")?;
    }
    Ok(())
}

fn write_sample(s: &Sample, out: &mut dyn Write) -> io::Result<()> {
    let key = if s.key_columns.is_empty() {
        "row md5".to_owned()
    } else {
        format!("({})", s.key_columns.join(", "))
    };
    for (label, keys) in [
        ("missing on target", &s.missing_on_target),
        ("extra on target", &s.extra_on_target),
        ("different", &s.different),
    ] {
        for k in keys {
            writeln!(out, "            {label}: {key}={k}")?;
        }
    }
    if s.truncated {
        writeln!(out, "            (more differences not listed)")?;
    }
    Ok(())
}
