//! Two of the limits every contender is measured against, in the same run:
//!
//! * **source read**: `COPY ... TO STDOUT (FORMAT binary)` of every table, the bytes counted and
//!   dropped, with 1 and 2 streams (tables split into ctid ranges, as a parallel snapshot
//!   reads them). No snapshot can be faster than the source can produce the rows.
//! * **L-slot**: `pg_recvlogical` draining a load's WAL to `/dev/null` with the same pgoutput
//!   options pgwarp uses (`proto_version` the server's highest, `binary`, `streaming`). No
//!   single-slot CDC consumer can apply faster than the walsender emits.
//!
//! L-copy, the third, is in [`super::lcopy`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use pgwarp_decoder::Lsn;
use pgwarp_tests::quote_ident;
use serde::Serialize;
use tokio::process::Command;

use super::child::{self, Usage};
use super::data::{SourceDb, TABLES};
use super::db;

/// One source read measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SourceRead {
    /// Parallel streams.
    pub streams: usize,
    /// Seconds.
    pub seconds: f64,
    /// Binary COPY bytes read.
    pub bytes: u64,
}

/// Reads every table with `streams` parallel `COPY TO STDOUT (FORMAT binary)` streams.
pub async fn source_read(src: &SourceDb, streams: usize) -> Result<SourceRead> {
    let streams = streams.max(1);
    let client = src.db.connect().await?;
    let mut jobs = VecDeque::new();
    for t in TABLES {
        let rel = format!("{}.{}", quote_ident(&src.schema), quote_ident(t.name));
        let pages = db::scalar_i64(
            &client,
            &format!("SELECT relpages FROM pg_class WHERE oid = '{rel}'::regclass"),
        )
        .await?;
        if streams == 1 || pages < 2 * streams as i64 {
            jobs.push_back(format!("COPY {rel} TO STDOUT (FORMAT binary)"));
            continue;
        }
        for i in 0..streams as i64 {
            let lo = i * pages / streams as i64;
            let hi = (i + 1) * pages / streams as i64;
            let upper = if i + 1 == streams as i64 {
                String::new()
            } else {
                format!(" AND ctid < '({hi},0)'::tid")
            };
            jobs.push_back(format!(
                "COPY (SELECT * FROM {rel} WHERE ctid >= '({lo},0)'::tid{upper}) TO STDOUT (FORMAT binary)"
            ));
        }
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let mut clients = Vec::new();
    for _ in 0..streams {
        clients.push(src.db.connect().await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let jobs = jobs.clone();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            loop {
                let job = jobs.lock().ok().and_then(|mut j| j.pop_front());
                let Some(sql) = job else { break };
                let stream = c.copy_out(sql.as_str()).await?;
                futures_util::pin_mut!(stream);
                while let Some(chunk) = stream.next().await {
                    bytes += chunk?.len() as u64;
                }
            }
            Ok::<u64, anyhow::Error>(bytes)
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.context("a reader task failed")??;
    }
    Ok(SourceRead {
        streams,
        seconds: started.elapsed().as_secs_f64(),
        bytes,
    })
}

/// The pgoutput options pgwarp streams with on this server.
pub fn pgoutput_options(server_version_num: u32, publication: &str) -> Vec<String> {
    let proto = pgwarp::source::replication::max_proto_version(server_version_num).as_u32();
    let mut o = vec![
        format!("proto_version={proto}"),
        format!("publication_names={publication}"),
    ];
    if server_version_num >= 140_000 {
        o.push("binary=true".into());
        o.push("streaming=on".into());
    }
    o
}

/// Creates a logical slot for an L-slot drain.
pub async fn create_slot(client: &tokio_postgres::Client, slot: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .await
        .with_context(|| format!("could not create slot {slot}"))
}

/// Drops a slot if it exists.
pub async fn drop_slot(client: &tokio_postgres::Client, slot: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{slot}'"
        ))
        .await
        .with_context(|| format!("could not drop slot {slot}"))
}

/// `pg_recvlogical` drains `slot` up to `endpos` into `/dev/null`.
pub async fn lslot_drain(
    bin_dir: &Path,
    conn_string: &str,
    slot: &str,
    options: &[String],
    endpos: Lsn,
) -> Result<Usage> {
    let mut cmd = Command::new(bin_dir.join("pg_recvlogical"));
    cmd.args(["-d", conn_string, "-S", slot, "--start", "--no-loop"])
        .args(["-f", "/dev/null"])
        .arg(format!("--endpos={endpos}"));
    for o in options {
        cmd.args(["-o", o]);
    }
    child::spawn("pg_recvlogical", cmd, None)?.wait_ok().await
}
