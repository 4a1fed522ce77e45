//! L-copy: what a perfect snapshot could do. The source's rows, pre-split per shard as binary
//! COPY files, are written with plain parallel `COPY ... FROM STDIN (FORMAT binary)` straight
//! into the same shard tables pgwarp writes to, with 1, 2 and 4 streams. Only the COPY in is
//! timed; exporting and splitting happen before the clock starts.
//!
//! Splitting: each hash-distributed table is read once with its rows' Citus hash appended as an
//! extra column (`<default hash function of the column type>(col)`, what Citus hashes with);
//! each tuple goes to the shard whose range holds the hash, with the extra field cut off.
//! Reference tables are one file, written to every placement.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use pgwarp_tests::cluster::CitusFixture;
use pgwarp_tests::quote_ident;
use serde::Serialize;

use super::data::{SourceDb, TABLES};
use super::db;

/// The binary COPY signature, flags and header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: &[u8] = &[0xff, 0xff];

/// One COPY into one shard placement.
#[derive(Debug, Clone)]
pub struct Job {
    /// Group of the node holding the placement.
    pub group: i32,
    /// The shard table, quoted and qualified.
    pub shard_table: String,
    /// A complete binary COPY stream.
    pub data: Bytes,
}

/// The exported, pre-split data.
#[derive(Debug, Default)]
pub struct Export {
    /// Jobs, largest first.
    pub jobs: Vec<Job>,
    /// Seconds the export took (not part of L-copy).
    pub seconds: f64,
}

/// One L-copy measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LcopyRun {
    /// Parallel streams.
    pub streams: usize,
    /// Seconds of COPY.
    pub seconds: f64,
}

/// The default hash support function of a type, as Citus uses it.
async fn hash_function(client: &tokio_postgres::Client, rel: &str, column: &str) -> Result<String> {
    db::scalar_text(
        client,
        &format!(
            "SELECT ap.amproc::regproc::text
               FROM pg_attribute a
               JOIN pg_opclass oc ON oc.opcintype = a.atttypid AND oc.opcdefault
               JOIN pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'
               JOIN pg_amproc ap ON ap.amprocfamily = oc.opcfamily AND ap.amprocnum = 1
                               AND ap.amproclefttype = oc.opcintype
                               AND ap.amprocrighttype = oc.opcintype
              WHERE a.attrelid = '{rel}'::regclass AND a.attname = '{column}'"
        ),
    )
    .await
}

/// Reads a whole `COPY ... TO STDOUT` result.
async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<u8>> {
    let stream = client.copy_out(sql).await?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn be_i16(b: &[u8], at: usize) -> Result<i16> {
    let s = b.get(at..at + 2).context("truncated COPY data")?;
    Ok(i16::from_be_bytes([s[0], s[1]]))
}

fn be_i32(b: &[u8], at: usize) -> Result<i32> {
    let s = b.get(at..at + 4).context("truncated COPY data")?;
    Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Splits binary COPY `data` whose last field is an int4 hash: `route(hash)` gives the
/// output index; the tuple is appended there without its last field.
fn split(data: &[u8], outs: &mut [Vec<u8>], route: impl Fn(i32) -> Result<usize>) -> Result<()> {
    if data.len() < 19 || data[..11] != HEADER[..11] {
        bail!("not a binary COPY stream");
    }
    let ext = be_i32(data, 15)? as usize;
    let mut pos = 19 + ext;
    loop {
        let n = be_i16(data, pos)?;
        if n == -1 {
            return Ok(());
        }
        if n < 1 {
            bail!("tuple with {n} fields");
        }
        let start = pos + 2;
        let mut at = start;
        let mut last_start = start;
        for _ in 0..n {
            last_start = at;
            let len = be_i32(data, at)?;
            at += 4 + len.max(0) as usize;
        }
        if be_i32(data, last_start)? != 4 {
            bail!("the hash field is not an int4");
        }
        let hash = be_i32(data, last_start + 4)?;
        let out = outs.get_mut(route(hash)?).context("route out of range")?;
        out.extend_from_slice(&(n - 1).to_be_bytes());
        out.extend_from_slice(data.get(start..last_start).context("truncated")?);
        pos = at;
    }
}

/// Exports the source's tables split per shard of `f`, writes the files under `dir`, and
/// reads them back as jobs.
pub async fn export(src: &SourceDb, f: &CitusFixture, dir: &Path) -> Result<Export> {
    let started = Instant::now();
    std::fs::create_dir_all(dir)?;
    let client = src.db.connect().await?;
    let mut files: Vec<(i32, String, std::path::PathBuf)> = Vec::new();
    for t in TABLES {
        let rel = format!("{}.{}", quote_ident(&src.schema), quote_ident(t.name));
        let shards = f.shards(t.name)?;
        let path_of = |shard_table: &str| {
            dir.join(
                shard_table
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect::<String>()
                    + ".bin",
            )
        };
        match t.shape.column() {
            Some(col) => {
                let func = hash_function(&client, &rel, col).await?;
                let data = copy_out(
                    &client,
                    &format!(
                        "COPY (SELECT t.*, {func}(t.{}) FROM {rel} t) TO STDOUT (FORMAT binary)",
                        quote_ident(col)
                    ),
                )
                .await?;
                let ranges: Vec<(i32, i32)> = shards
                    .iter()
                    .map(|s| s.range.context("hash shard without a range"))
                    .collect::<Result<_>>()?;
                let mut outs: Vec<Vec<u8>> = shards.iter().map(|_| HEADER.to_vec()).collect();
                split(&data, &mut outs, |h| {
                    ranges
                        .iter()
                        .position(|(lo, hi)| *lo <= h && h <= *hi)
                        .context("hash value in no shard range")
                })?;
                for (shard, mut out) in shards.iter().zip(outs) {
                    out.extend_from_slice(TRAILER);
                    let path = path_of(&shard.shard_table);
                    std::fs::write(&path, &out)?;
                    for g in &shard.groups {
                        files.push((*g, shard.shard_table.clone(), path.clone()));
                    }
                }
            }
            None => {
                let data =
                    copy_out(&client, &format!("COPY {rel} TO STDOUT (FORMAT binary)")).await?;
                for shard in &shards {
                    let path = path_of(&shard.shard_table);
                    std::fs::write(&path, &data)?;
                    for g in &shard.groups {
                        files.push((*g, shard.shard_table.clone(), path.clone()));
                    }
                }
            }
        }
    }
    let mut jobs = Vec::with_capacity(files.len());
    for (group, shard_table, path) in files {
        let data = Bytes::from(std::fs::read(&path)?);
        jobs.push(Job {
            group,
            shard_table,
            data,
        });
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.data.len()));
    Ok(Export {
        jobs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Empties every shard table of the fixture and checkpoints its nodes.
pub fn truncate(f: &CitusFixture) -> Result<()> {
    let mut per_group: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for t in TABLES {
        for s in f.shards(t.name)? {
            for g in &s.groups {
                per_group.entry(*g).or_default().push(s.shard_table.clone());
            }
        }
    }
    for (group, tables) in per_group {
        f.node_of_group(group)?
            .execute(&format!("TRUNCATE {}; CHECKPOINT", tables.join(", ")))?;
    }
    Ok(())
}

/// One L-copy: `streams` tasks, each with its own connection to every node, take jobs
/// (largest first) and COPY them in. Connections open before the clock starts.
pub async fn run(f: &CitusFixture, export: &Export, streams: usize) -> Result<LcopyRun> {
    truncate(f)?;
    let queue = Arc::new(Mutex::new(
        export.jobs.iter().cloned().collect::<VecDeque<_>>(),
    ));
    let mut conns = Vec::new();
    for _ in 0..streams {
        let mut per_node = BTreeMap::new();
        for node in f.nodes() {
            per_node.insert(node.groupid, db::connect(&node.conn_string).await?);
        }
        conns.push(per_node);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for per_node in conns {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let job = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(job) = job else { break };
                let client = per_node
                    .get(&job.group)
                    .with_context(|| format!("no connection for group {}", job.group))?;
                let sink = client
                    .copy_in::<_, Bytes>(&format!(
                        "COPY {} FROM STDIN (FORMAT binary)",
                        job.shard_table
                    ))
                    .await?;
                futures_util::pin_mut!(sink);
                const PIECE: usize = 256 * 1024;
                for at in (0..job.data.len()).step_by(PIECE) {
                    sink.send(job.data.slice(at..(at + PIECE).min(job.data.len())))
                        .await?;
                }
                sink.as_mut().finish().await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("an L-copy stream failed")??;
    }
    Ok(LcopyRun {
        streams,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream of `(id int8, name text, hash int4)` tuples.
    fn stream(rows: &[(i64, Option<&str>, i32)]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for (id, name, hash) in rows {
            out.extend_from_slice(&3i16.to_be_bytes());
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
            match name {
                Some(n) => {
                    out.extend_from_slice(&(n.len() as i32).to_be_bytes());
                    out.extend_from_slice(n.as_bytes());
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(&hash.to_be_bytes());
        }
        out.extend_from_slice(TRAILER);
        out
    }

    #[test]
    fn split_routes_by_the_last_field_and_cuts_it_off() {
        let data = stream(&[(1, Some("a"), -5), (2, None, 7), (3, Some("ccc"), -1)]);
        let mut outs = vec![Vec::new(), Vec::new()];
        split(&data, &mut outs, |h| Ok(usize::from(h >= 0))).unwrap();
        let tuple = |id: i64, name: Option<&str>| {
            let mut t = 2i16.to_be_bytes().to_vec();
            t.extend_from_slice(&8i32.to_be_bytes());
            t.extend_from_slice(&id.to_be_bytes());
            match name {
                Some(n) => {
                    t.extend_from_slice(&(n.len() as i32).to_be_bytes());
                    t.extend_from_slice(n.as_bytes());
                }
                None => t.extend_from_slice(&(-1i32).to_be_bytes()),
            }
            t
        };
        let mut negative = tuple(1, Some("a"));
        negative.extend(tuple(3, Some("ccc")));
        assert_eq!(outs[0], negative);
        assert_eq!(outs[1], tuple(2, None));
    }

    #[test]
    fn split_rejects_truncated_and_foreign_input() {
        let data = stream(&[(1, Some("abc"), 0)]);
        let mut outs = vec![Vec::new()];
        let cut = &data[..data.len() - 6];
        assert!(split(cut, &mut outs, |_| Ok(0)).is_err());
        assert!(split(b"not a copy stream at all", &mut outs, |_| Ok(0)).is_err());
    }
}
