//! Every contender's result is checked against its source: a contender that loses or changes
//! rows is reported as failed, however fast it was.
//!
//! Per table, both sides compute `count(*)` and an order-independent content checksum: the sum
//! over rows of the first 60 bits of `md5(row::text)`. Sums add up over shards, so a
//! distributed table is checked by adding its shards' sums (each shard read on its first
//! placement), and every placement of a reference table must match on its own. Sessions use
//! `TimeZone = UTC` so `timestamptz` renders the same on both sides.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use pgwarp_tests::cluster::CitusFixture;
use pgwarp_tests::quote_ident;
use serde::Serialize;

use super::data::{Shape, TABLES};
use super::db;

/// Count and checksum of a table (or a part of one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Rows.
    pub rows: i64,
    /// Sum of 60-bit md5 prefixes.
    pub sum: i128,
}

impl std::ops::Add for Digest {
    type Output = Digest;
    fn add(self, o: Digest) -> Digest {
        Digest {
            rows: self.rows + o.rows,
            sum: self.sum + o.sum,
        }
    }
}

/// The verdict on one contender's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Every table equal.
    pub ok: bool,
    /// Rows in the source, over all tables.
    pub source_rows: i64,
    /// Rows found in the target, over all tables.
    pub target_rows: i64,
    /// One line per differing table.
    pub problems: Vec<String>,
}

/// The digest query for a relation.
fn digest_sql(relation: &str) -> String {
    format!(
        "SELECT count(*)::text, coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text \
         FROM {relation} t"
    )
}

/// The digest of a relation over a connection.
async fn digest(client: &tokio_postgres::Client, relation: &str) -> Result<Digest> {
    let rows = client.simple_query(&digest_sql(relation)).await?;
    for m in rows {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            let rows: i64 = row.get(0).unwrap_or("0").parse()?;
            let sum: i128 = row.get(1).unwrap_or("0").parse()?;
            return Ok(Digest { rows, sum });
        }
    }
    anyhow::bail!("no digest row for {relation}")
}

/// Digests of every benchmark table in `schema` over one connection string.
pub async fn digest_tables(conn_string: &str, schema: &str) -> Result<BTreeMap<String, Digest>> {
    let client = db::connect(conn_string).await?;
    client.batch_execute("SET TimeZone = 'UTC'").await?;
    let mut out = BTreeMap::new();
    for t in TABLES {
        let rel = format!("{}.{}", quote_ident(schema), quote_ident(t.name));
        out.insert(
            t.name.to_owned(),
            digest(&client, &rel)
                .await
                .with_context(|| format!("could not checksum {rel}"))?,
        );
    }
    Ok(out)
}

/// Digests of every benchmark table on a Citus-shaped fixture, read from the shards.
/// Returns, per table, the total and whether every placement of a replicated shard agreed.
pub async fn digest_fixture(f: &CitusFixture) -> Result<BTreeMap<String, (Digest, Vec<String>)>> {
    let mut clients: BTreeMap<i32, tokio_postgres::Client> = BTreeMap::new();
    for node in f.nodes() {
        let c = db::connect(&node.conn_string).await?;
        c.batch_execute("SET TimeZone = 'UTC'").await?;
        clients.insert(node.groupid, c);
    }
    let mut out = BTreeMap::new();
    for t in TABLES {
        let mut total = Digest::default();
        let mut disagreements = Vec::new();
        for shard in f.shards(t.name)? {
            let mut first: Option<Digest> = None;
            for group in &shard.groups {
                let client = clients
                    .get(group)
                    .with_context(|| format!("no node for group {group}"))?;
                let d = digest(client, &shard.shard_table)
                    .await
                    .with_context(|| format!("could not checksum {}", shard.shard_table))?;
                match first {
                    None => first = Some(d),
                    Some(f0) if f0 != d => disagreements.push(format!(
                        "placement of {} on group {group} has {} rows, the first has {}",
                        shard.shard_table, d.rows, f0.rows
                    )),
                    Some(_) => {}
                }
                if !matches!(t.shape, Shape::Reference) {
                    // hash shards have one placement; reference placements are compared above
                    break;
                }
            }
            total = total + first.unwrap_or_default();
        }
        out.insert(t.name.to_owned(), (total, disagreements));
    }
    Ok(out)
}

/// Compares source digests with target digests (and placement disagreements).
pub fn compare(
    source: &BTreeMap<String, Digest>,
    target: &BTreeMap<String, (Digest, Vec<String>)>,
) -> Verdict {
    let mut v = Verdict {
        ok: true,
        ..Default::default()
    };
    for (table, s) in source {
        v.source_rows += s.rows;
        let Some((t, disagreements)) = target.get(table) else {
            v.ok = false;
            v.problems.push(format!("{table} missing on the target"));
            continue;
        };
        v.target_rows += t.rows;
        if s.rows != t.rows {
            v.ok = false;
            v.problems
                .push(format!("{table}: {} rows, source has {}", t.rows, s.rows));
        } else if s.sum != t.sum {
            v.ok = false;
            v.problems
                .push(format!("{table}: same row count, different content"));
        }
        if !disagreements.is_empty() {
            v.ok = false;
            v.problems.extend(disagreements.iter().cloned());
        }
    }
    v
}

/// Source vs a plain target (or the coordinator's own tables) in `target_schema`.
pub async fn verify_plain(
    source_conn: &str,
    source_schema: &str,
    target_conn: &str,
    target_schema: &str,
) -> Result<Verdict> {
    let s = digest_tables(source_conn, source_schema).await?;
    let t = digest_tables(target_conn, target_schema).await?;
    let t = t.into_iter().map(|(k, d)| (k, (d, Vec::new()))).collect();
    Ok(compare(&s, &t))
}

/// Source vs the shards of a fixture.
pub async fn verify_fixture(
    source_conn: &str,
    source_schema: &str,
    f: &CitusFixture,
) -> Result<Verdict> {
    let s = digest_tables(source_conn, source_schema).await?;
    let t = digest_fixture(f).await?;
    Ok(compare(&s, &t))
}
