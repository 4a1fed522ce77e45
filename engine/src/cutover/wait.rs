//! Waiting until the target holds every transaction committed on the source before the fence.
//!
//! **The position.** Once the fence is up and the sessions open before it have exited,
//! [`fence_position`] reads `pg_current_wal_insert_lsn()`: every transaction that committed
//! before the fence has its commit record before that position (`F`). It then commits one
//! transaction with `synchronous_commit = on` that writes a transactional logical decoding
//! message (`pg_logical_emit_message`: WAL of its own, so the commit is flushed, and ignored by
//! pgoutput unless asked for messages), which flushes the WAL past `F`: the WAL sender can
//! decode up to `F` at once, without waiting for the WAL writer or for other activity on an
//! idle server.
//!
//! **Caught up** when either of two statements made by the running sync covers `F`:
//!
//! * the slot's `confirmed_flush_lsn >= F`: the sync confirms the minimum over nodes of what
//!   each has committed ("every transaction whose commit starts before this position is
//!   applied"), never more;
//! * every node's `pgwarp.progress` row for the slot `>= F - 1`: a progress row holds the commit
//!   LSN of the last transaction applied there, "everything at or before" (an idle node's row
//!   is brought up to its watermark every few seconds).
//!
//! Both only move once data and position are committed on the nodes. Nothing here waits for a
//! particular process: if no sync is streaming, neither moves and the wait ends at `--max-wait`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use pgwarp_decoder::Lsn;
use tokio_postgres::Client;

use crate::conn::connect;
use crate::pipeline::nodes::NodeTarget;
use crate::source::admin::slot_info;

use super::error::CutoverError;

/// How often positions are polled.
const POLL: Duration = Duration::from_millis(100);

/// Reads the fence position and makes sure the WAL up to it is flushed (see the module docs).
pub async fn fence_position(source: &Client) -> Result<Lsn, CutoverError> {
    const WHAT: &str = "could not read the WAL position";
    let text: String = source
        .query_one("SELECT pg_catalog.pg_current_wal_insert_lsn()::text", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(CutoverError::query(WHAT, "source"))?;
    source
        .batch_execute(
            "BEGIN READ WRITE; SET LOCAL synchronous_commit = on; \
             SELECT pg_catalog.pg_logical_emit_message(true, 'pgwarp', 'cutover fence'); \
             COMMIT",
        )
        .await
        .map_err(CutoverError::query("could not flush the WAL", "source"))?;
    parse(&text)
}

fn parse(text: &str) -> Result<Lsn, CutoverError> {
    text.parse().map_err(|_| {
        CutoverError::Precondition(format!("the source returned an invalid LSN \"{text}\""))
    })
}

/// Progress of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProgress {
    /// `host:port`, as in `pgwarp.progress.node`.
    pub node: String,
    /// The recorded position (`None`: no row yet).
    pub lsn: Option<Lsn>,
}

/// Where things stood when the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// How long it took.
    pub waited: Duration,
    /// The slot's `confirmed_flush_lsn`.
    pub confirmed: Option<Lsn>,
    /// Each node's progress row.
    pub nodes: Vec<NodeProgress>,
}

/// Whether the positions cover every transaction committed before `fence`.
pub fn caught_up(fence: Lsn, confirmed: Option<Lsn>, nodes: &[NodeProgress]) -> bool {
    let by_slot = confirmed.is_some_and(|c| c >= fence);
    let by_nodes = !nodes.is_empty()
        && nodes
            .iter()
            .all(|n| n.lsn.is_some_and(|l| l.0.saturating_add(1) >= fence.0));
    by_slot || by_nodes
}

/// Polls until [`caught_up`] or `max_wait` has passed.
pub async fn wait(
    source: &Client,
    slot: &str,
    fence: Lsn,
    nodes: &[NodeTarget],
    max_wait: Duration,
) -> Result<CatchUp, CutoverError> {
    let started = Instant::now();
    let mut clients = Vec::with_capacity(nodes.len());
    for n in nodes {
        let (client, _task) = connect(&n.config)
            .await
            .map_err(|source| CutoverError::Connect {
                side: format!("node {}", n.label),
                source,
            })?;
        clients.push((n.label.clone(), client));
    }
    let mut active_seen = false;
    loop {
        let info = slot_info(source, slot).await?;
        let Some(info) = info else {
            return Err(CutoverError::CatchUp(format!(
                "replication slot \"{slot}\" disappeared while waiting for the target"
            )));
        };
        active_seen |= info.active;
        let mut progress = Vec::with_capacity(clients.len());
        for (label, client) in &clients {
            progress.push(NodeProgress {
                node: label.clone(),
                lsn: node_lsn(client, slot, label).await?,
            });
        }
        if caught_up(fence, info.confirmed_flush_lsn, &progress) {
            return Ok(CatchUp {
                waited: started.elapsed(),
                confirmed: info.confirmed_flush_lsn,
                nodes: progress,
            });
        }
        if started.elapsed() >= max_wait {
            let mut msg = format!(
                "the target did not catch up with the source within {} s: the source was fenced \
                 at WAL position {fence}; the slot has confirmed {}",
                max_wait.as_secs(),
                info.confirmed_flush_lsn
                    .map_or_else(|| "nothing".to_owned(), |l| l.to_string())
            );
            for p in &progress {
                let _ = write!(
                    msg,
                    ", node {} has applied {}",
                    p.node,
                    p.lsn
                        .map_or_else(|| "nothing".to_owned(), |l| l.to_string())
                );
            }
            if !active_seen {
                msg.push_str("; no process is streaming the slot: is pgwarp sync running?");
            } else {
                msg.push_str("; the sync is streaming but has not applied up to the fence (check its log and pgwarp status)");
            }
            return Err(CutoverError::CatchUp(msg));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The node's progress row for the slot, `None` when there is none (or no table yet).
async fn node_lsn(client: &Client, slot: &str, label: &str) -> Result<Option<Lsn>, CutoverError> {
    let row = client
        .query_opt(
            "SELECT lsn::text FROM pgwarp.progress WHERE slot = $1 AND node = $2",
            &[&slot, &label],
        )
        .await;
    match row {
        Ok(Some(r)) => {
            let text: String = r.try_get(0).map_err(CutoverError::query(
                "could not read pgwarp.progress",
                format!("node {label}"),
            ))?;
            parse(&text).map(Some)
        }
        Ok(None) => Ok(None),
        Err(e)
            if e.as_db_error()
                .is_some_and(|d| matches!(d.code().code(), "42P01" | "3F000")) =>
        {
            Ok(None)
        }
        Err(e) => Err(CutoverError::query(
            "could not read pgwarp.progress",
            format!("node {label}"),
        )(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(lsn: Option<u64>) -> NodeProgress {
        NodeProgress {
            node: "n".into(),
            lsn: lsn.map(Lsn),
        }
    }

    #[test]
    fn caught_up_by_the_slot_or_by_every_node() {
        let f = Lsn(1000);
        assert!(caught_up(f, Some(Lsn(1000)), &[]));
        assert!(!caught_up(f, Some(Lsn(999)), &[]));
        // progress rows are "at or before": 999 covers every commit starting before 1000
        assert!(caught_up(
            f,
            Some(Lsn(5)),
            &[node(Some(999)), node(Some(2000))]
        ));
        assert!(!caught_up(f, None, &[node(Some(998)), node(Some(2000))]));
        assert!(!caught_up(f, None, &[node(None), node(Some(2000))]));
        assert!(!caught_up(f, None, &[]));
    }
}
