//! Reading the status from the source, the target and every node.

use std::time::{Duration, Instant};

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

use crate::citus::Topology;
use crate::config::Settings;
use crate::conn::connect;
use crate::pipeline::nodes::{NodeTarget, node_targets, target_addr};
use crate::pipeline::{PipelineError, catalog, state};
use crate::source::admin::slot_info;

use super::{NodeStatus, SourceStatus, StatusReport, TableStatus};

async fn wal_lsn(source: &Client) -> Result<Lsn, PipelineError> {
    let text: String = source
        .query_one("SELECT pg_catalog.pg_current_wal_lsn()::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(PipelineError::query(
            "could not read the source's WAL position",
        ))?;
    text.parse()
        .map_err(|_| PipelineError::Internal(format!("invalid WAL position \"{text}\"")))
}

/// What one node has recorded: position and seconds since.
async fn node_progress(node: &NodeTarget, slot: &str) -> Option<(Lsn, f64)> {
    let (client, _task) = connect(&node.config).await.ok()?;
    let row = client
        .query_opt(
            "SELECT lsn::text, extract(epoch FROM now() - updated_at)::float8 \
               FROM pgwarp.progress WHERE slot = $1 AND node = $2",
            &[&slot, &node.label],
        )
        .await
        .ok()??;
    let lsn: String = row.try_get(0).ok()?;
    Some((lsn.parse().ok()?, row.try_get(1).ok()?))
}

async fn reachable(node: &NodeTarget) -> bool {
    connect(&node.config).await.is_ok()
}

/// Reads the status of the sync of `settings.slot`, sampling throughput over `sample`.
pub async fn gather(settings: &Settings, sample: Duration) -> Result<StatusReport, PipelineError> {
    let slot = settings.slot.as_str();
    let (source, _s) = connect(&settings.source).await?;
    let (target, _t) = connect(&settings.target).await?;
    let has_state = state::exists(&target).await?;
    let sync_state = if has_state {
        state::load(&target, slot).await?
    } else {
        None
    };
    let chunks = if has_state {
        state::chunks(&target, slot).await?
    } else {
        Vec::new()
    };
    let table_names: Vec<String> = sync_state
        .as_ref()
        .map(|s| s.tables.clone())
        .unwrap_or_default();
    let tables = table_names
        .iter()
        .map(|t| {
            let mine = chunks.iter().filter(|c| &c.table == t);
            let mut s = TableStatus {
                table: t.clone(),
                chunks: 0,
                chunks_done: 0,
                rows: 0,
                bytes: 0,
            };
            for c in mine {
                s.chunks += 1;
                if c.done_xmin.is_some() {
                    s.chunks_done += 1;
                }
                s.rows += c.rows;
                s.bytes += c.bytes;
            }
            s
        })
        .collect();

    let nodes = if table_names.is_empty() {
        Vec::new()
    } else {
        let names = catalog::quote_stored_names(&target, &table_names).await?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let topology = Topology::load(&target, &target_addr(settings), &refs).await?;
        node_targets(&topology, &settings.target, &settings.nodes)
    };

    let slot_row = slot_info(&source, slot).await?;
    let started = Instant::now();
    let mut first = Vec::with_capacity(nodes.len());
    for n in &nodes {
        first.push(node_progress(n, slot).await);
    }
    tokio::time::sleep(sample).await;
    let wal2 = wal_lsn(&source).await?;
    let mut node_status = Vec::with_capacity(nodes.len());
    let mut second = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let p = node_progress(n, slot).await;
        second.push(p);
        let lag_bytes = p.map(|(lsn, _)| wal2.0.saturating_sub(lsn.0));
        node_status.push(NodeStatus {
            node: n.label.clone(),
            reachable: p.is_some() || reachable(n).await,
            applied_lsn: p.map(|(l, _)| l.to_string()),
            lag_bytes,
            lag_seconds: p.map(|(_, age)| if lag_bytes == Some(0) { 0.0 } else { age }),
            last_progress_seconds: p.map(|(_, age)| age),
        });
    }
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let min_of = |v: &[Option<(Lsn, f64)>]| -> Option<u64> {
        v.iter()
            .map(|p| p.map(|(l, _)| l.0))
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .min()
    };
    let throughput = match (min_of(&first), min_of(&second)) {
        (Some(a), Some(b)) if !nodes.is_empty() => Some(b.saturating_sub(a) as f64 / elapsed),
        _ => None,
    };
    Ok(StatusReport {
        slot: slot.to_owned(),
        publication: sync_state.as_ref().map(|s| s.publication.clone()),
        phase: sync_state
            .as_ref()
            .map_or_else(|| "none".to_owned(), |s| s.phase.as_str().to_owned()),
        tables,
        consistent_point: sync_state
            .as_ref()
            .and_then(|s| s.consistent_point)
            .map(|l| l.to_string()),
        idempotent_until: sync_state.as_ref().map(|s| s.idempotent_until.to_string()),
        snapshot_done_at: sync_state.as_ref().and_then(|s| s.snapshot_done_at.clone()),
        caught_up_lsn: sync_state
            .as_ref()
            .and_then(|s| s.caught_up_lsn)
            .map(|l| l.to_string()),
        source: SourceStatus {
            wal_lsn: wal2.to_string(),
            slot_exists: slot_row.is_some(),
            slot_active: slot_row.as_ref().is_some_and(|s| s.active),
            wal_status: slot_row.as_ref().and_then(|s| s.wal_status.clone()),
            confirmed_flush_lsn: slot_row
                .as_ref()
                .and_then(|s| s.confirmed_flush_lsn)
                .map(|l| l.to_string()),
            restart_lsn: slot_row
                .as_ref()
                .and_then(|s| s.restart_lsn)
                .map(|l| l.to_string()),
            retained_wal_bytes: slot_row
                .as_ref()
                .and_then(|s| s.restart_lsn)
                .map(|r| wal2.0.saturating_sub(r.0)),
        },
        nodes: node_status,
        throughput_bytes_per_second: throughput,
        sample_seconds: elapsed,
    })
}
