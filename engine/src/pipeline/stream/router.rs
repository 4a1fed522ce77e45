//! The router: decodes pgoutput, assembles transactions and routes every change to the node
//! queues. It runs on its own thread (plain blocking code: decoding, hashing and spill-file I/O
//! never stall a runtime worker or the replication task), between two byte-bounded queues.
//!
//! * Ordinary transactions (Begin .. Commit) arrive whole and committed, so their changes are
//!   routed as they come and sent to each node in pieces of `piece_bytes`; the last piece of a
//!   transaction for a node carries its end. A node whose recorded progress already covers the
//!   transaction's commit LSN gets nothing of it (exactly-once after a restart).
//! * Streamed transactions (Stream Start .. Stream Commit) may still abort: their frames go to
//!   the [`SpillStore`] and are decoded and routed only at Stream Commit, in commit order.
//! * A Relation message is checked against the table as it was described at start. An older
//!   definition (the table before columns were added at its end, met again when transactions
//!   from before an `ADD COLUMN` are replayed) is routed with that older column list. Any
//!   other difference stops the sync at that point: the router tells every node that the
//!   stream is complete up to the end of the last whole transaction and stops without
//!   cancelling the nodes, which apply everything queued before it (`schema_stop`), so the
//!   flush position reaches the change exactly and never passes it.
//! * Between transactions, the router tells idle nodes how far the stream has got
//!   ([`NodeItem::Watermark`]), so the flush position can advance past transactions that did
//!   not touch them.
//!
//! How one change is routed (updates that move rows in particular) is in `changes`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pgwarp_decoder::{
    DecodeContext, Decoder, Lsn, Message, PgTimestamp, ProtocolVersion, Relation, decode_message,
};
use pgwarp_sink::{Change, Row, Shard};
use tokio::runtime::Handle;

use super::super::error::PipelineError;
use super::super::routes::{RouteMap, RouteTable};
use super::super::stats::Stats;
use super::changes::{
    added_columns, change_xid, dist, older_prefix, relation_difference, route_update,
};
use super::items::{Input, NodeItem, TxnEnd, TxnMark};
use super::queue::{QueueReceiver, QueueSender};
use super::spill::SpillStore;

/// Overhead counted per change on top of its row bytes.
const CHANGE_OVERHEAD: usize = 48;
/// Least time between two broadcast watermarks after commits.
const WATERMARK_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of the router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Negotiated pgoutput version.
    pub version: ProtocolVersion,
    /// Per node: transactions committing at or before this LSN are already applied there.
    pub node_progress: Vec<Lsn>,
    /// Transactions committing before this are applied idempotently.
    pub idempotent_until: Lsn,
    /// Changes per node sent as one piece.
    pub piece_bytes: usize,
    /// The publication (for messages).
    pub publication: String,
    /// Set when the router stops at a schema change: the nodes must then finish their queues
    /// rather than be cancelled.
    pub schema_stop: Arc<AtomicBool>,
}

/// How a relation id maps to a table: the table as described at start, or an older
/// definition of it derived for replayed transactions.
#[derive(Debug, Clone)]
enum RouteSlot {
    Base(usize),
    /// With what differs from the table as described (for the error, if it turns out to be
    /// a newer definition after all).
    Older(Arc<RouteTable>, String),
}

/// A table to route one change with.
enum RouteRef {
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

/// One transaction being routed.
pub(super) struct OpenTxn {
    mark: TxnMark,
    pending: Vec<Vec<Change>>,
    pending_bytes: Vec<usize>,
    pending_rows: Vec<u64>,
    touched: Vec<bool>,
    skip: Vec<bool>,
}

impl OpenTxn {
    pub(super) fn push(&mut self, node: usize, change: Change, row_bytes: usize) {
        if self.skip.get(node).copied().unwrap_or(true) {
            return;
        }
        self.pending[node].push(change);
        self.pending_bytes[node] += row_bytes + CHANGE_OVERHEAD;
        self.pending_rows[node] += row_bytes as u64;
        self.touched[node] = true;
    }
}

/// The router's state.
pub struct Router {
    routes: Arc<RouteMap>,
    out: Vec<QueueSender<NodeItem>>,
    runtime: Handle,
    stats: Arc<Stats>,
    cfg: RouterConfig,
    decoder: Decoder,
    relations: HashMap<u32, RouteSlot>,
    /// End of the last complete transaction (or keepalive position between transactions):
    /// every node may count the stream as done before it.
    last_end: Lsn,
    txn: Option<OpenTxn>,
    stream_xid: Option<u32>,
    spill: SpillStore,
    last_watermark: Instant,
}

impl Router {
    /// A router sending to `out[node]`.
    pub fn new(
        routes: Arc<RouteMap>,
        out: Vec<QueueSender<NodeItem>>,
        runtime: Handle,
        stats: Arc<Stats>,
        cfg: RouterConfig,
        spill: SpillStore,
    ) -> Router {
        Router {
            decoder: Decoder::new(cfg.version),
            last_end: Lsn::INVALID,
            routes,
            out,
            runtime,
            stats,
            cfg,
            relations: HashMap::new(),
            txn: None,
            stream_xid: None,
            spill,
            last_watermark: Instant::now(),
        }
    }

    /// Runs until the input ends (or an error).
    pub fn run(mut self, mut input: QueueReceiver<Input>) -> Result<(), PipelineError> {
        while let Some(queued) = input.blocking_recv() {
            match queued.item {
                Input::Data {
                    wal_start,
                    wal_end,
                    frame,
                } => {
                    self.stats
                        .source_wal_end
                        .fetch_max(wal_end.0, Ordering::Relaxed);
                    self.message(wal_start, &frame)?;
                }
                Input::Keepalive { wal_end } => {
                    self.stats
                        .source_wal_end
                        .fetch_max(wal_end.0, Ordering::Relaxed);
                    if self.txn.is_none() && !self.decoder.in_stream() {
                        self.stats.received.fetch_max(wal_end.0, Ordering::Relaxed);
                        self.last_end = self.last_end.max(wal_end);
                        self.watermark(wal_end)?;
                    }
                }
            }
            self.stats
                .spilled_bytes
                .store(self.spill.spilled_bytes(), Ordering::Relaxed);
        }
        Ok(())
    }

    fn emit(&self, node: usize, item: NodeItem, bytes: usize) -> Result<(), PipelineError> {
        let out = self
            .out
            .get(node)
            .ok_or_else(|| PipelineError::Internal(format!("no queue for node {node}")))?;
        // a closed queue means its node task stopped: for an error it reports itself
        out.blocking_send(&self.runtime, item, bytes)
            .map_err(|_| PipelineError::Stopped)
    }

    fn watermark(&mut self, at: Lsn) -> Result<(), PipelineError> {
        for node in 0..self.out.len() {
            self.emit(node, NodeItem::Watermark(at), 1)?;
        }
        self.last_watermark = Instant::now();
        Ok(())
    }

    fn open(&self, commit_lsn: Lsn) -> OpenTxn {
        let n = self.out.len();
        OpenTxn {
            mark: TxnMark {
                commit_lsn,
                idempotent: commit_lsn < self.cfg.idempotent_until,
            },
            pending: (0..n).map(|_| Vec::new()).collect(),
            pending_bytes: vec![0; n],
            pending_rows: vec![0; n],
            touched: vec![false; n],
            skip: (0..n)
                .map(|i| {
                    self.cfg
                        .node_progress
                        .get(i)
                        .is_some_and(|p| p.is_valid() && commit_lsn <= *p)
                })
                .collect(),
        }
    }

    fn message(&mut self, wal_start: Lsn, frame: &Bytes) -> Result<(), PipelineError> {
        let message = self.decoder.decode_at(frame, wal_start)?;
        match message {
            Message::Begin(b) => {
                if self.txn.is_some() {
                    return Err(PipelineError::Internal(format!(
                        "Begin at {wal_start} inside a transaction"
                    )));
                }
                self.txn = Some(self.open(b.final_lsn));
            }
            Message::Commit(c) => {
                let txn = self.txn.take().ok_or_else(|| {
                    PipelineError::Internal(format!("Commit at {wal_start} outside a transaction"))
                })?;
                self.finish(txn, c.end_lsn, c.commit_time)?;
            }
            Message::Relation(r) => self.relation(&r, wal_start)?,
            m @ (Message::Insert(_)
            | Message::Update(_)
            | Message::Delete(_)
            | Message::Truncate(_)) => {
                if let Some(top) = self.stream_xid {
                    let change_xid = change_xid(&m).unwrap_or(top);
                    self.spill.append(top, change_xid, frame)?;
                } else {
                    let mut txn = self.txn.take().ok_or_else(|| {
                        PipelineError::Internal(format!(
                            "change at {wal_start} outside a transaction"
                        ))
                    })?;
                    let routed = self.route(&mut txn, m);
                    let flushed = routed.and_then(|()| self.flush_pieces(&mut txn, false, None));
                    self.txn = Some(txn);
                    flushed?;
                }
            }
            Message::StreamStart(s) => self.stream_xid = Some(s.xid),
            Message::StreamStop => self.stream_xid = None,
            Message::StreamCommit(c) => {
                let mut reader = self.spill.take(c.xid)?;
                let mut txn = self.open(c.commit_lsn);
                let ctx = DecodeContext {
                    version: self.cfg.version,
                    in_stream: true,
                };
                while let Some(frame) = reader.next_frame()? {
                    let m = decode_message(&frame, ctx).map_err(|e| e.with_lsn(c.commit_lsn))?;
                    self.route(&mut txn, m)?;
                    self.flush_pieces(&mut txn, false, None)?;
                }
                self.finish(txn, c.end_lsn, c.commit_time)?;
            }
            Message::StreamAbort(a) => {
                if a.subxid == a.xid {
                    self.spill.abort(a.xid);
                } else {
                    self.spill.abort_subxact(a.xid, a.subxid)?;
                }
            }
            Message::Origin(_) | Message::Type(_) | Message::Logical(_) => {}
            other => {
                return Err(PipelineError::Unsupported(format!(
                    "unexpected {} message at {wal_start}: two-phase decoding is not enabled",
                    other.name()
                )));
            }
        }
        Ok(())
    }

    /// Sends the last pieces of a transaction and counts it as received.
    fn finish(
        &mut self,
        mut txn: OpenTxn,
        end_lsn: Lsn,
        commit_time: PgTimestamp,
    ) -> Result<(), PipelineError> {
        self.flush_pieces(
            &mut txn,
            true,
            Some(TxnEnd {
                end_lsn,
                commit_time,
            }),
        )?;
        self.stats.received.fetch_max(end_lsn.0, Ordering::Relaxed);
        self.last_end = self.last_end.max(end_lsn);
        if self.last_watermark.elapsed() >= WATERMARK_INTERVAL {
            self.watermark(end_lsn)?;
        }
        Ok(())
    }

    /// Sends pending changes: all of them with `end` when the transaction is over, else only
    /// the nodes whose pending changes reached a piece.
    fn flush_pieces(
        &mut self,
        txn: &mut OpenTxn,
        all: bool,
        end: Option<TxnEnd>,
    ) -> Result<(), PipelineError> {
        for node in 0..txn.pending.len() {
            let due = if all {
                txn.touched[node]
            } else {
                txn.pending_bytes[node] >= self.cfg.piece_bytes
            };
            if !due {
                continue;
            }
            let changes = std::mem::take(&mut txn.pending[node]);
            let bytes = std::mem::take(&mut txn.pending_bytes[node]);
            let row_bytes = std::mem::take(&mut txn.pending_rows[node]);
            let item = NodeItem::Changes {
                changes,
                row_bytes,
                txn: txn.mark,
                end,
            };
            self.emit(node, item, bytes)?;
        }
        Ok(())
    }

    fn table(&self, relation_id: u32) -> Result<RouteRef, PipelineError> {
        match self.relations.get(&relation_id) {
            Some(RouteSlot::Base(i)) => Ok(RouteRef::Base(self.routes.clone(), *i)),
            Some(RouteSlot::Older(t, _)) => Ok(RouteRef::Older(t.clone())),
            None => Err(PipelineError::Internal(format!(
                "change for relation {relation_id} before its Relation message"
            ))),
        }
    }

    fn relation(&mut self, r: &Relation, at: Lsn) -> Result<(), PipelineError> {
        let Some(t) = self.routes.find(&r.namespace, &r.name) else {
            return Err(PipelineError::UnexpectedTable {
                table: format!("{}.{}", r.namespace, r.name),
                publication: self.cfg.publication.clone(),
            });
        };
        let rt = &self.routes.tables[t];
        let lsn = match &self.txn {
            Some(txn) => txn.mark.commit_lsn,
            None if at.is_valid() => at,
            None => self.last_end,
        };
        let before_described =
            self.routes.described_at.is_valid() && lsn < self.routes.described_at;
        let Some(detail) = relation_difference(rt, r, before_described) else {
            self.relations.insert(r.relation_id, RouteSlot::Base(t));
            return Ok(());
        };
        // fewer columns: the table before columns were added, if the transaction committed
        // before the table was described (checked when its changes are routed); a column
        // dropped since looks the same, and then the transaction commits later
        if self.routes.described_at.is_valid()
            && let Some(older) = older_prefix(rt, r).and_then(|n| rt.narrowed(n))
        {
            tracing::debug!(table = %rt.name, columns = r.columns.len(), "an older definition of the table");
            self.relations
                .insert(r.relation_id, RouteSlot::Older(Arc::new(older), detail));
            return Ok(());
        }
        let error = PipelineError::SchemaChanged {
            table: rt.name.clone(),
            lsn,
            detail: if before_described {
                detail
            } else {
                format!("{detail}; {}", super::super::APPLY_ON_TARGET)
            },
            // columns of an older definition were dropped since: nothing to follow
            added: if before_described {
                Vec::new()
            } else {
                added_columns(rt, r).unwrap_or_default()
            },
        };
        Err(self.stop_at_schema_change(error))
    }

    /// Lets every node count the stream done up to the end of the last whole transaction and
    /// apply what is queued (the nodes are not cancelled), so the flush position reaches the
    /// schema change and stops there; returns `error`.
    fn stop_at_schema_change(&mut self, error: PipelineError) -> PipelineError {
        if self.last_end.is_valid()
            && let Err(e) = self.watermark(self.last_end)
        {
            return e;
        }
        self.cfg.schema_stop.store(true, Ordering::Release);
        error
    }

    /// The table for a change of `relation_id` in `txn`: an older definition only for a
    /// transaction committed before the tables were described.
    fn table_for(&mut self, relation_id: u32, txn: &OpenTxn) -> Result<RouteRef, PipelineError> {
        if let Some(RouteSlot::Older(older, detail)) = self.relations.get(&relation_id)
            && txn.mark.commit_lsn >= self.routes.described_at
        {
            let error = PipelineError::SchemaChanged {
                table: older.name.clone(),
                lsn: txn.mark.commit_lsn,
                detail: detail.clone(),
                added: Vec::new(),
            };
            return Err(self.stop_at_schema_change(error));
        }
        self.table(relation_id)
    }

    fn route(&mut self, txn: &mut OpenTxn, message: Message) -> Result<(), PipelineError> {
        match message {
            Message::Insert(i) => {
                let rt = &*self.table_for(i.relation_id, txn)?;
                let cost = i.new.wire_bytes().len();
                let placements = rt.route(dist(rt, &i.new))?;
                let row = Row::Tuple(i.new);
                for (node, shard) in placements {
                    let change = Change::Insert {
                        shard: shard.clone(),
                        row: row.clone(),
                    };
                    txn.push(*node, change, cost);
                }
            }
            Message::Delete(d) => {
                let rt = &*self.table_for(d.relation_id, txn)?;
                let key = d.old.tuple();
                let cost = key.wire_bytes().len();
                let placements = rt.route(dist(rt, key))?;
                let row = Row::Tuple(key.clone());
                for (node, shard) in placements {
                    let change = Change::Delete {
                        shard: shard.clone(),
                        key: row.clone(),
                    };
                    txn.push(*node, change, cost);
                }
            }
            Message::Update(u) => {
                let rt = &*self.table_for(u.relation_id, txn)?;
                route_update(rt, txn, u.old, u.new)?;
            }
            Message::Truncate(t) => {
                let mut per_node: Vec<Vec<Shard>> = vec![Vec::new(); self.out.len()];
                for rel in &t.relation_ids {
                    let rt = &*self.table_for(*rel, txn)?;
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
                    txn.push(node, change, 0);
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
