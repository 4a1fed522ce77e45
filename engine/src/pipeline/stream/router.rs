//! The router: decodes pgoutput, assembles transactions and routes every change to the node
//! queues. It runs on its own thread (plain blocking code: decoding, hashing and spill-file I/O
//! never stall a runtime worker or the replication task), between two byte-bounded queues.
//!
//! * Ordinary transactions (Begin .. Commit) arrive whole and committed, so their changes are
//!   routed as they come into per-node buffers (`outbox`), which go out on size, when the
//!   router has no more input waiting, or after a short time; a buffer cut on size may end
//!   inside a transaction. A node whose recorded progress already covers the transaction's
//!   commit LSN gets nothing of it (exactly-once after a restart).
//! * Streamed transactions (Stream Start .. Stream Commit) may still abort. One at a time, when
//!   that is safe, is routed as its segments arrive and applied on the nodes in an open
//!   transaction (`live`); others go to the [`SpillStore`] and are decoded and routed only at
//!   Stream Commit, in commit order.
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
//! How one change is routed is in `tables` (updates that move rows in particular in `changes`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pgwarp_decoder::{
    DecodeContext, Decoder, Lsn, Message, PgTimestamp, ProtocolVersion, Relation,
    ReplicationMessage, decode_message,
};
use tokio::runtime::Handle;

use super::super::error::PipelineError;
use super::super::routes::RouteMap;
use super::super::stats::Stats;
use super::changes::{added_columns, change_xid, older_prefix, relation_difference};
use super::items::{Input, NodeItem, StreamOp, TxnEnd, TxnMark};
use super::live::LiveTxn;
use super::outbox::Outbox;
use super::queue::{QueueReceiver, QueueSender};
use super::spill::SpillStore;
use super::tables::{RouteSlot, Tables};

/// Least time between two broadcast watermarks after commits.
const WATERMARK_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of the router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Negotiated pgoutput version.
    pub version: ProtocolVersion,
    /// The position streaming started from: every transaction sent commits at or after it.
    pub start: Lsn,
    /// Per node: transactions committing at or before this LSN are already applied there.
    pub node_progress: Vec<Lsn>,
    /// Transactions committing before this are applied idempotently.
    pub idempotent_until: Lsn,
    /// Changes per node sent as one piece.
    pub piece_bytes: usize,
    /// Apply one streamed transaction at a time as it arrives (see `live`); otherwise every
    /// streamed transaction is spilled until its commit.
    pub live_streams: bool,
    /// The publication (for messages).
    pub publication: String,
    /// Set when the router stops at a schema change: the nodes must then finish their queues
    /// rather than be cancelled.
    pub schema_stop: Arc<AtomicBool>,
}

/// The router's state.
pub struct Router {
    out: Vec<QueueSender<NodeItem>>,
    runtime: Handle,
    stats: Arc<Stats>,
    cfg: RouterConfig,
    decoder: Decoder,
    tables: Tables,
    /// End of the last complete transaction (or keepalive position between transactions):
    /// every node may count the stream as done before it.
    last_end: Lsn,
    /// Ordinary transactions' changes on their way to the nodes.
    outbox: Outbox,
    /// The xid of the stream segment being received.
    stream_xid: Option<u32>,
    /// The streamed transaction applied as it arrives.
    live: Option<LiveTxn>,
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
            outbox: Outbox::new(out.len(), cfg.piece_bytes),
            tables: Tables {
                routes,
                relations: HashMap::new(),
                nodes: out.len(),
            },
            out,
            runtime,
            stats,
            cfg,
            stream_xid: None,
            live: None,
            spill,
            last_watermark: Instant::now(),
        }
    }

    /// Runs until the input ends (or an error). Buffered whole transactions go out when due
    /// (see `outbox`; the router waits for more input meanwhile), and at the end.
    pub fn run(mut self, mut input: QueueReceiver<Input>) -> Result<(), PipelineError> {
        loop {
            let mut queued = match input.try_recv() {
                Some(q) => {
                    if self.outbox.overdue() {
                        self.send_whole()?;
                    }
                    q
                }
                None => match self.outbox.wait_left() {
                    None => match input.blocking_recv() {
                        Some(q) => q,
                        None => break,
                    },
                    Some(left) => {
                        // the timer must be made inside the runtime's context
                        let next = self
                            .runtime
                            .block_on(async { tokio::time::timeout(left, input.recv()).await });
                        match next {
                            Ok(Some(q)) => q,
                            Ok(None) => break,
                            Err(_) => {
                                self.send_whole()?;
                                continue;
                            }
                        }
                    }
                },
            };
            for m in std::mem::take(&mut queued.item) {
                self.input(m)?;
            }
            drop(queued);
            self.stats
                .spilled_bytes
                .store(self.spill.spilled_bytes(), Ordering::Relaxed);
        }
        self.send_whole()
    }

    fn input(&mut self, m: ReplicationMessage) -> Result<(), PipelineError> {
        match m {
            ReplicationMessage::XLogData(w) => {
                self.stats
                    .source_wal_end
                    .fetch_max(w.wal_end.0, Ordering::Relaxed);
                self.message(w.wal_start, &w.data)
            }
            ReplicationMessage::PrimaryKeepalive(k) => {
                self.stats
                    .source_wal_end
                    .fetch_max(k.wal_end.0, Ordering::Relaxed);
                if self.outbox.current().is_none() && !self.decoder.in_stream() {
                    self.stats
                        .received
                        .fetch_max(k.wal_end.0, Ordering::Relaxed);
                    self.last_end = self.last_end.max(k.wal_end);
                    self.watermark(k.wal_end)?;
                }
                Ok(())
            }
        }
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

    /// Sends every node its buffered whole transactions.
    fn send_whole(&mut self) -> Result<(), PipelineError> {
        for node in 0..self.out.len() {
            if let Some((pieces, bytes)) = self.outbox.take_whole(node) {
                self.emit(node, NodeItem::Txns(pieces), bytes)?;
            }
        }
        self.outbox.sent_whole();
        Ok(())
    }

    /// Sends what the nodes whose buffers reached a piece must send.
    fn send_full(&mut self) -> Result<(), PipelineError> {
        for node in 0..self.out.len() {
            if let Some((pieces, bytes)) = self.outbox.take_full(node) {
                self.emit(node, NodeItem::Txns(pieces), bytes)?;
            }
        }
        Ok(())
    }

    /// Sends the live transaction's unsent steps: every node's (`all`), or the full ones'.
    fn send_live(&mut self, all: bool) -> Result<(), PipelineError> {
        for node in 0..self.out.len() {
            let ops = match &mut self.live {
                Some(live) if all || live.full(node) => live.take(node),
                _ => continue,
            };
            for (op, bytes) in ops {
                self.emit(node, NodeItem::Stream(op), bytes)?;
            }
        }
        Ok(())
    }

    fn watermark(&mut self, at: Lsn) -> Result<(), PipelineError> {
        self.send_whole()?;
        for node in 0..self.out.len() {
            self.emit(node, NodeItem::Watermark(at), 1)?;
        }
        self.last_watermark = Instant::now();
        Ok(())
    }

    fn mark(&self, commit_lsn: Lsn) -> TxnMark {
        TxnMark {
            commit_lsn,
            idempotent: commit_lsn < self.cfg.idempotent_until,
        }
    }

    /// Starts routing an ordinary (or spilled) transaction.
    fn begin(&mut self, commit_lsn: Lsn) {
        let mark = self.mark(commit_lsn);
        let progress = &self.cfg.node_progress;
        self.outbox.begin(mark, |i| {
            progress
                .get(i)
                .is_some_and(|p| p.is_valid() && commit_lsn <= *p)
        });
    }

    /// Whether a streamed transaction starting now may be applied live: a lower bound of its
    /// commit LSN settles skipping, idempotence and the table definitions (see `live`).
    fn may_go_live(&self) -> Option<Lsn> {
        if !self.cfg.live_streams || self.live.is_some() {
            return None;
        }
        let lower = self.cfg.start.max(self.last_end);
        let ahead_of_nodes = self
            .cfg
            .node_progress
            .iter()
            .all(|p| !p.is_valid() || *p <= lower);
        (lower.is_valid() && ahead_of_nodes && lower >= self.cfg.idempotent_until).then_some(lower)
    }

    fn message(&mut self, wal_start: Lsn, frame: &Bytes) -> Result<(), PipelineError> {
        let message = self.decoder.decode_at(frame, wal_start)?;
        match message {
            Message::Begin(b) => {
                if self.outbox.current().is_some() {
                    return Err(PipelineError::Internal(format!(
                        "Begin at {wal_start} inside a transaction"
                    )));
                }
                self.begin(b.final_lsn);
            }
            Message::Commit(c) => {
                if self.outbox.current().is_none() {
                    return Err(PipelineError::Internal(format!(
                        "Commit at {wal_start} outside a transaction"
                    )));
                }
                self.finish(c.end_lsn, c.commit_time)?;
            }
            Message::Relation(r) => self.relation(&r, wal_start)?,
            m @ (Message::Insert(_)
            | Message::Update(_)
            | Message::Delete(_)
            | Message::Truncate(_)) => match self.stream_xid {
                Some(top) if self.live.as_ref().is_some_and(|l| l.xid == top) => {
                    let routed = match self.live.as_mut() {
                        Some(live) => {
                            live.made_by(change_xid(&m).unwrap_or(top));
                            // the change's own position is before the commit too, and it tells
                            // an older definition of a table from a newer one (see `live`)
                            let mark = TxnMark {
                                commit_lsn: live.mark.commit_lsn.max(wal_start),
                                idempotent: false,
                            };
                            self.tables.route(mark, live, m)
                        }
                        None => Ok(()),
                    };
                    routed.map_err(|e| self.routing_failed(e))?;
                    self.send_live(false)?;
                }
                Some(top) => {
                    let change_xid = change_xid(&m).unwrap_or(top);
                    self.spill.append(top, change_xid, frame)?;
                }
                None => {
                    let Some(mark) = self.outbox.current() else {
                        return Err(PipelineError::Internal(format!(
                            "change at {wal_start} outside a transaction"
                        )));
                    };
                    let routed = self.tables.route(mark, &mut self.outbox, m);
                    routed.map_err(|e| self.routing_failed(e))?;
                    self.send_full()?;
                }
            },
            Message::StreamStart(s) => {
                self.stream_xid = Some(s.xid);
                if s.first_segment
                    && let Some(lower) = self.may_go_live()
                {
                    tracing::debug!(xid = s.xid, lower = %lower, "applying a streamed transaction as it arrives");
                    self.live = Some(LiveTxn::new(
                        s.xid,
                        lower,
                        self.out.len(),
                        self.cfg.piece_bytes,
                    ));
                }
                if self.live.as_ref().is_some_and(|l| l.xid == s.xid) {
                    // transactions committed before this segment go first
                    self.send_whole()?;
                }
            }
            Message::StreamStop => {
                if self
                    .live
                    .as_ref()
                    .is_some_and(|l| Some(l.xid) == self.stream_xid)
                {
                    self.send_live(true)?;
                }
                self.stream_xid = None;
            }
            Message::StreamCommit(c) => {
                if self.live.as_ref().is_some_and(|l| l.xid == c.xid) {
                    self.commit_live(c.commit_lsn, c.end_lsn, c.commit_time)?;
                } else {
                    self.commit_spilled(c.xid, c.commit_lsn, c.end_lsn, c.commit_time)?;
                }
            }
            Message::StreamAbort(a) => {
                if self.live.as_ref().is_some_and(|l| l.xid == a.xid) {
                    self.abort_live(a.xid, a.subxid)?;
                } else if a.subxid == a.xid {
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

    /// A spilled transaction committed: decode, route and send it now.
    fn commit_spilled(
        &mut self,
        xid: u32,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: PgTimestamp,
    ) -> Result<(), PipelineError> {
        let mut reader = self.spill.take(xid)?;
        self.begin(commit_lsn);
        let mark = self.mark(commit_lsn);
        let ctx = DecodeContext {
            version: self.cfg.version,
            in_stream: true,
        };
        while let Some(frame) = reader.next_frame()? {
            let m = decode_message(&frame, ctx).map_err(|e| e.with_lsn(commit_lsn))?;
            let routed = self.tables.route(mark, &mut self.outbox, m);
            routed.map_err(|e| self.routing_failed(e))?;
            self.send_full()?;
        }
        self.finish(end_lsn, commit_time)
    }

    /// The live transaction committed: every node it touched commits its open transaction.
    fn commit_live(
        &mut self,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: PgTimestamp,
    ) -> Result<(), PipelineError> {
        self.send_live(true)?;
        // transactions that committed before it go first: the node's progress row must only
        // move forward in commit order
        self.send_whole()?;
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        let end = TxnEnd {
            end_lsn,
            commit_time,
        };
        for node in live.touched().collect::<Vec<_>>() {
            self.emit(
                node,
                NodeItem::Stream(StreamOp::Commit { commit_lsn, end }),
                1,
            )?;
        }
        self.ended(end_lsn)
    }

    /// The live transaction (`subxid == xid`) or one of its subtransactions aborted.
    fn abort_live(&mut self, xid: u32, subxid: u32) -> Result<(), PipelineError> {
        self.send_live(true)?;
        if subxid == xid {
            if let Some(live) = self.live.take() {
                for node in live.touched().collect::<Vec<_>>() {
                    self.emit(node, NodeItem::Stream(StreamOp::Abort), 1)?;
                }
            }
            return Ok(());
        }
        let rollbacks = match &mut self.live {
            Some(live) => live.abort_subxact(subxid),
            None => Vec::new(),
        };
        for (node, savepoint) in rollbacks {
            self.emit(node, NodeItem::Stream(StreamOp::RollbackTo(savepoint)), 1)?;
        }
        Ok(())
    }

    /// Ends the transaction being routed and counts it as received.
    fn finish(&mut self, end_lsn: Lsn, commit_time: PgTimestamp) -> Result<(), PipelineError> {
        self.outbox.end(TxnEnd {
            end_lsn,
            commit_time,
        });
        self.ended(end_lsn)
    }

    /// A transaction ending at `end_lsn` was handed to the nodes.
    fn ended(&mut self, end_lsn: Lsn) -> Result<(), PipelineError> {
        self.stats.received.fetch_max(end_lsn.0, Ordering::Relaxed);
        self.last_end = self.last_end.max(end_lsn);
        if self.last_watermark.elapsed() >= WATERMARK_INTERVAL {
            self.watermark(end_lsn)?;
        }
        Ok(())
    }

    fn relation(&mut self, r: &Relation, at: Lsn) -> Result<(), PipelineError> {
        let Some(t) = self.tables.routes.find(&r.namespace, &r.name) else {
            return Err(PipelineError::UnexpectedTable {
                table: format!("{}.{}", r.namespace, r.name),
                publication: self.cfg.publication.clone(),
            });
        };
        let routes = self.tables.routes.clone();
        let rt = &routes.tables[t];
        let lsn = match self.outbox.current() {
            Some(mark) => mark.commit_lsn,
            None if at.is_valid() => at,
            None => self.last_end,
        };
        let before_described = routes.described_at.is_valid() && lsn < routes.described_at;
        let Some(detail) = relation_difference(rt, r, before_described) else {
            self.tables
                .relations
                .insert(r.relation_id, RouteSlot::Base(t));
            return Ok(());
        };
        // fewer columns: the table before columns were added, if the transaction committed
        // before the table was described (checked when its changes are routed); a column
        // dropped since looks the same, and then the transaction commits later
        if routes.described_at.is_valid()
            && let Some(older) = older_prefix(rt, r).and_then(|n| rt.narrowed(n))
        {
            tracing::debug!(table = %rt.name, columns = r.columns.len(), "an older definition of the table");
            self.tables
                .relations
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

    /// What routing a change failed with: a schema change stops the sync there.
    fn routing_failed(&mut self, error: PipelineError) -> PipelineError {
        match error {
            e @ PipelineError::SchemaChanged { .. } => self.stop_at_schema_change(e),
            e => e,
        }
    }
}
