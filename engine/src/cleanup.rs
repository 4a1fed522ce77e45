//! `pgwarp cleanup`: remove what a sync left behind, on the source and on every node.
//!
//! * the replication slot (it holds WAL on the source for as long as it exists),
//! * the publication,
//! * the sync's rows in the `pgwarp` schema of the coordinator (`sync_state`,
//!   `snapshot_chunks`, `cutover`) and of every node (`progress`, where the snapshot readers'
//!   rows are keyed `<slot>.snapshot`), and the schema itself once no other sync has rows in
//!   it. Any table of the schema with a `slot` column is cleaned, so tables added by later
//!   versions are covered too.
//!
//! Every step checks before it acts, so running cleanup again reports "nothing to remove". A
//! slot that is being streamed is an error naming the consumer, unless `force` ends it first
//! (the sync then stops). A node that cannot be reached does not stop the others; it is
//! reported and the command fails at the end.
//!
//! If a cutover fence may still be up on the source, its record is about to disappear with the
//! schema: the report carries the statements that lift it.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::citus::Node;
use crate::conn::{ConnConfig, connect};
use crate::cutover::{CutoverError, record, retire};
use crate::pipeline::nodes::node_target;

/// What to clean.
#[derive(Debug, Clone)]
pub struct CleanupRequest {
    /// The source database.
    pub source: ConnConfig,
    /// The target (coordinator or plain PostgreSQL).
    pub target: ConnConfig,
    /// Per-node connection overrides.
    pub nodes: BTreeMap<(String, u16), ConnConfig>,
    /// The sync's slot.
    pub slot: String,
    /// The sync's publication.
    pub publication: String,
    /// End the slot's consumer if it is being streamed.
    pub force: bool,
}

/// What happened on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCleanup {
    /// No `pgwarp` schema there.
    Nothing,
    /// The schema was dropped.
    SchemaDropped,
    /// This slot's rows were removed; other syncs' rows remain, so the schema stays.
    RowsRemoved(u64),
    /// The node could not be cleaned.
    Failed(String),
}

/// What cleanup did.
#[derive(Debug, Clone)]
pub struct CleanupReport {
    /// Whether the slot existed (and was dropped).
    pub slot_dropped: bool,
    /// Whether the publication existed (and was dropped).
    pub publication_dropped: bool,
    /// Per node (`host:port`, the coordinator first).
    pub nodes: Vec<(String, NodeCleanup)>,
    /// Statements that lift a cutover fence that may still be up on the source.
    pub fence_lift_sql: Vec<String>,
}

impl CleanupReport {
    /// Whether some node could not be cleaned.
    pub fn failed(&self) -> bool {
        self.nodes
            .iter()
            .any(|(_, c)| matches!(c, NodeCleanup::Failed(_)))
    }
}

/// Runs the cleanup.
pub async fn cleanup(req: &CleanupRequest) -> Result<CleanupReport, CutoverError> {
    let (source, _s) = connect(&req.source)
        .await
        .map_err(|source| CutoverError::Connect {
            side: "source".to_owned(),
            source,
        })?;
    let (target, _t) = connect(&req.target)
        .await
        .map_err(|source| CutoverError::Connect {
            side: "target".to_owned(),
            source,
        })?;
    let slot_dropped = retire::drop_slot(&source, &req.slot, req.force).await?;
    let publication_dropped = retire::drop_pub(&source, &req.publication).await?;

    let fence_lift_sql = match record::load(&target, &req.slot).await? {
        Some(r) if r.state.may_be_fenced() => r.fence.lift_sql(),
        _ => Vec::new(),
    };
    let addr = crate::verify::target_addr(&req.target);
    let label = format!("{}:{}", addr.host, addr.port);
    let coordinator = clean_node(&target, &req.slot, &label)
        .await
        .unwrap_or_else(|e| NodeCleanup::Failed(e.to_string()));
    let mut nodes = vec![(label, coordinator)];
    for node in worker_nodes(&target, req).await? {
        let result = match connect(&node.config).await {
            Ok((client, _task)) => clean_node(&client, &req.slot, &node.label)
                .await
                .unwrap_or_else(|e| NodeCleanup::Failed(e.to_string())),
            Err(e) => NodeCleanup::Failed(e.to_string()),
        };
        nodes.push((node.label, result));
    }
    Ok(CleanupReport {
        slot_dropped,
        publication_dropped,
        nodes,
        fence_lift_sql,
    })
}

/// The primaries of `pg_dist_node` other than the coordinator (group 0), with how to reach
/// them; none on a plain PostgreSQL.
async fn worker_nodes(
    target: &Client,
    req: &CleanupRequest,
) -> Result<Vec<crate::pipeline::nodes::NodeTarget>, CutoverError> {
    const WHAT: &str = "could not list the nodes";
    let table: Option<String> = target
        .query_one(
            "SELECT coalesce(to_regclass('pg_catalog.pg_dist_node'), \
                             to_regclass('pg_dist_node'))::text",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(CutoverError::query(WHAT, "target"))?;
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    let rows = target
        .query(
            &format!(
                "SELECT nodeid, groupid, nodename::text, nodeport FROM {table} \
                  WHERE noderole = 'primary' AND groupid <> 0 ORDER BY groupid, nodeid"
            ),
            &[],
        )
        .await
        .map_err(CutoverError::query(WHAT, "target"))?;
    let mut nodes = Vec::with_capacity(rows.len());
    for r in rows {
        let read = || -> Result<Node, tokio_postgres::Error> {
            let port: i32 = r.try_get(3)?;
            Ok(Node {
                node_id: r.try_get(0)?,
                group_id: r.try_get(1)?,
                host: r.try_get(2)?,
                // pg_dist_node.nodeport is an int; anything outside u16 cannot be connected
                // to and shows as port 0 in the failure that follows
                port: u16::try_from(port).unwrap_or(0),
            })
        };
        nodes.push(read().map_err(CutoverError::query(WHAT, "target"))?);
    }
    // How to reach a node is the sync's rule (pipeline::nodes).
    Ok(nodes
        .iter()
        .map(|node| node_target(node, &req.target, &req.nodes))
        .collect())
}

/// Removes the slot's rows from every `pgwarp` table with a `slot` column, and the schema when
/// nothing else is left in it.
async fn clean_node(client: &Client, slot: &str, label: &str) -> Result<NodeCleanup, CutoverError> {
    const WHAT: &str = "could not clean the pgwarp schema";
    let side = format!("node {label}");
    let side = side.as_str();
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgwarp')",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(CutoverError::query(WHAT, side))?;
    if !exists {
        return Ok(NodeCleanup::Nothing);
    }
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
              WHERE n.nspname = 'pgwarp' AND c.relkind IN ('r', 'p') \
                AND a.attname = 'slot' AND NOT a.attisdropped ORDER BY 1",
            &[],
        )
        .await
        .map_err(CutoverError::query(WHAT, side))?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(CutoverError::query(WHAT, side))?;
    let mut removed = 0;
    let mut others = false;
    for t in &tables {
        let q = crate::citus::names::quote_qualified("pgwarp", t);
        removed += client
            .execute(
                &format!("DELETE FROM {q} WHERE slot = $1 OR starts_with(slot, $1 || '.')"),
                &[&slot],
            )
            .await
            .map_err(CutoverError::query(WHAT, side))?;
        let left: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {q})"), &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(CutoverError::query(WHAT, side))?;
        others |= left;
    }
    if others {
        return Ok(NodeCleanup::RowsRemoved(removed));
    }
    let dropped = client
        .batch_execute(
            "BEGIN; SET LOCAL citus.enable_ddl_propagation TO off; \
             DROP SCHEMA IF EXISTS pgwarp CASCADE; COMMIT",
        )
        .await;
    if let Err(e) = dropped {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(CutoverError::query(
            "could not drop the pgwarp schema",
            side,
        )(e));
    }
    Ok(NodeCleanup::SchemaDropped)
}
