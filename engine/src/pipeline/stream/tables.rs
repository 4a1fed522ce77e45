//! The tables a stream's changes are routed by, keyed by the relation ids the stream uses, and
//! routing one change of a transaction into per-node buffers ([`Push`]).
//!
//! A relation id maps to the table as described at start or, for transactions replayed from
//! before an `ADD COLUMN`, to an older definition of it (see the router); a change routed
//! through an older definition of a transaction that commits at or after the moment the tables
//! were described is a schema change ([`PipelineError::SchemaChanged`]).

use std::collections::HashMap;
use std::sync::Arc;

use pgwarp_decoder::Message;
use pgwarp_sink::{Change, Row, Shard};

use super::super::error::PipelineError;
use super::super::routes::{RouteMap, RouteTable};
use super::changes::{dist, route_update};
use super::items::TxnMark;
use super::outbox::Push;

/// How a relation id maps to a table: the table as described at start, or an older
/// definition of it derived for replayed transactions.
#[derive(Debug, Clone)]
pub(super) enum RouteSlot {
    Base(usize),
    /// With what differs from the table as described (for the error, if it turns out to be
    /// a newer definition after all).
    Older(Arc<RouteTable>, String),
}

/// A table to route one change with.
pub(super) enum RouteRef {
    Base(Arc<RouteMap>, usize),
    Older(Arc<RouteTable>),
}

impl std::ops::Deref for RouteRef {
    type Target = RouteTable;

    fn deref(&self) -> &RouteTable {
        match self {
            RouteRef::Base(map, i) => &map.tables[*i],
            RouteRef::Older(t) => t,
        }
    }
}

/// The tables, by the relation ids the stream uses.
pub(super) struct Tables {
    pub(super) routes: Arc<RouteMap>,
    pub(super) relations: HashMap<u32, RouteSlot>,
    pub(super) nodes: usize,
}

impl Tables {
    fn table(&self, relation_id: u32) -> Result<RouteRef, PipelineError> {
        match self.relations.get(&relation_id) {
            Some(RouteSlot::Base(i)) => Ok(RouteRef::Base(self.routes.clone(), *i)),
            Some(RouteSlot::Older(t, _)) => Ok(RouteRef::Older(t.clone())),
            None => Err(PipelineError::Internal(format!(
                "change for relation {relation_id} before its Relation message"
            ))),
        }
    }

    /// The table for a change of `relation_id` in the transaction `mark`: an older definition
    /// only for a transaction committed before the tables were described (else a
    /// [`PipelineError::SchemaChanged`]).
    pub(super) fn table_for(
        &self,
        relation_id: u32,
        mark: TxnMark,
    ) -> Result<RouteRef, PipelineError> {
        if let Some(RouteSlot::Older(older, detail)) = self.relations.get(&relation_id)
            && mark.commit_lsn >= self.routes.described_at
        {
            return Err(PipelineError::SchemaChanged {
                table: older.name.clone(),
                lsn: mark.commit_lsn,
                detail: detail.clone(),
                added: Vec::new(),
            });
        }
        self.table(relation_id)
    }

    /// Routes one change of the transaction `mark` into `out`.
    pub(super) fn route(
        &self,
        mark: TxnMark,
        out: &mut impl Push,
        message: Message,
    ) -> Result<(), PipelineError> {
        match message {
            Message::Insert(i) => {
                let rt = &*self.table_for(i.relation_id, mark)?;
                let cost = i.new.wire_bytes().len();
                let placements = rt.route(dist(rt, &i.new))?;
                let row = Row::Tuple(i.new);
                for (node, shard) in placements {
                    let change = Change::Insert {
                        shard: shard.clone(),
                        row: row.clone(),
                    };
                    out.push(*node, change, cost);
                }
            }
            Message::Delete(d) => {
                let rt = &*self.table_for(d.relation_id, mark)?;
                let key = d.old.tuple();
                let cost = key.wire_bytes().len();
                let placements = rt.route(dist(rt, key))?;
                let row = Row::Tuple(key.clone());
                for (node, shard) in placements {
                    let change = Change::Delete {
                        shard: shard.clone(),
                        key: row.clone(),
                    };
                    out.push(*node, change, cost);
                }
            }
            Message::Update(u) => {
                let rt = &*self.table_for(u.relation_id, mark)?;
                route_update(rt, out, u.old, u.new)?;
            }
            Message::Truncate(t) => {
                let mut per_node: Vec<Vec<Shard>> = vec![Vec::new(); self.nodes];
                for rel in &t.relation_ids {
                    let rt = &*self.table_for(*rel, mark)?;
                    for (node, shards) in rt.by_node.iter().enumerate() {
                        if let Some(list) = per_node.get_mut(node) {
                            list.extend(shards.iter().cloned());
                        }
                    }
                }
                for (node, shards) in per_node.into_iter().enumerate() {
                    if shards.is_empty() {
                        continue;
                    }
                    // CASCADE is not passed on: the source lists every published table the
                    // cascade reached, and the target must not truncate tables outside the sync.
                    let change = Change::Truncate {
                        shards,
                        cascade: false,
                        restart_identity: t.restart_identity(),
                    };
                    out.push(node, change, 0);
                }
            }
            other => {
                return Err(PipelineError::Internal(format!(
                    "cannot route a {} message",
                    other.name()
                )));
            }
        }
        Ok(())
    }
}
