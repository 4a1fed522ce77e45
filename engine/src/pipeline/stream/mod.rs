//! The stream: following the slot and applying every change on the nodes.
//!
//! ```text
//!            ┌──────────────── this task ────────────────┐
//!  source ──►│ ReplicationStream.next_batch()  (feedback) │──Input──► router thread ──NodeItem──► node task ×N
//!            │   ▲ set_durable(min over nodes)             │ (one per   decode, route,  (whole    batch, apply;
//!            └───┼─────────────────────────────────────────┘  socket    spill or live   txns,     stream lane for
//!                │                                             read)                    pieces)   a live txn (sink)
//!                └──────────────── FlushTracker ◄─────────────────────────────────────────────────────┘
//! ```
//!
//! One task owns the replication connection and its feedback timer (STYLE rule 5); it never
//! decodes. Work moves between the stages in batches: everything one read of the socket
//! delivered goes to the router as one item, and the router hands each node the changes of
//! many transactions at once (`outbox`), so a stream of small transactions costs a few
//! wake-ups per read rather than several per transaction. A large streamed transaction is
//! applied on the nodes as it arrives, in an open transaction on a second connection per node
//! (`live`); `streamed_apply = "at-commit"` in the configuration spills every streamed
//! transaction and applies it at its commit instead.
//!
//! Both queues are bounded in bytes and block when full; while the replication task waits
//! for room it still sends status updates, so the server does not time it out. Stopping
//! (Ctrl-C, SIGTERM, `--until-caught-up` reached, or an error in any stage) cancels one token:
//! the replication task stops reading, every node task finishes the batch it is applying and
//! abandons the rest (an open transaction is rolled back with its connection), and a last
//! status update reports exactly what every node committed.

pub mod applier;
mod changes;
mod flush;
pub mod items;
mod live;
mod open_txn;
mod outbox;
pub mod queue;
mod router;
mod spill;
mod tables;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgwarp_decoder::{Lsn, ReplicationMessage};
use pgwarp_sink::{NodeWriter, WriterConfig};
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, StreamedApply};
use crate::source::replication::message_bytes;
use crate::source::{ReplicationClient, ReplicationStream, StreamOptions};

use super::error::PipelineError;
use super::nodes::{NodeConnector, NodeTarget};
use super::routes::RouteMap;
use super::stats::Stats;
use applier::NodeTask;
use flush::FlushTracker;
use items::Input;
use queue::{QueueSender, byte_queue};
use router::{Router, RouterConfig};
use spill::SpillStore;

/// Bytes of raw messages between the replication task and the router.
const INPUT_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Largest hand-off from the replication task to the router.
const INPUT_BATCH_BYTES: usize = 1024 * 1024;
/// After a read smaller than this, the replication task lets the socket fill for
/// [`COALESCE_WAIT`] before reading again: the walsender flushes after every message, and
/// waking up for each costs pgwarp more than decoding it.
const COALESCE_BELOW: usize = 64 * 1024;
/// See [`COALESCE_BELOW`]: at most this much latency added.
const COALESCE_WAIT: Duration = Duration::from_millis(1);
/// How often `--until-caught-up` checks and asks the server for its position.
const CATCH_UP_POLL: Duration = Duration::from_millis(250);

/// What streaming needs.
pub struct StreamContext {
    /// Settings.
    pub settings: Settings,
    /// The tables.
    pub routes: Arc<RouteMap>,
    /// The nodes.
    pub nodes: Vec<NodeTarget>,
    /// Counters.
    pub stats: Arc<Stats>,
}

/// Where and how to stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamParams {
    /// Start position (the slot's confirmed position or its consistent point).
    pub start: Lsn,
    /// Transactions committing before this are applied idempotently.
    pub idempotent_until: Lsn,
    /// Stop once every node has applied everything before this position.
    pub until: Option<Lsn>,
}

/// How streaming ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Stopped by the token.
    Stopped,
    /// Every node applied everything before the position.
    CaughtUp(Lsn),
}

/// Streams until stopped, caught up, or an error.
pub async fn run(
    cx: &StreamContext,
    params: StreamParams,
    cancel: &CancellationToken,
) -> Result<StreamEnd, PipelineError> {
    let settings = &cx.settings;
    // every node writer and the replication connection at once (writers keep node order)
    let writers = futures_util::future::try_join_all(cx.nodes.iter().map(|node| {
        let connector = Arc::new(NodeConnector::new(node.config.clone()));
        let mut config = WriterConfig::new(settings.slot.clone(), node.label.clone());
        config.io_timeout = Some(settings.node_timeout);
        async move {
            NodeWriter::connect(connector, config)
                .await
                .map_err(PipelineError::from)
        }
    }));
    let client = async {
        ReplicationClient::connect(&settings.source)
            .await
            .map_err(PipelineError::from)
    };
    let (writers, client) = tokio::try_join!(writers, client)?;
    let node_progress: Vec<Lsn> = writers.iter().map(NodeWriter::committed_lsn).collect();
    for (node, p) in cx.nodes.iter().zip(&node_progress) {
        tracing::info!(node = %node.label, progress = %p, "node writer ready");
    }

    let streaming = client.server_version_num() >= 140_000;
    let mut options = StreamOptions::new([settings.publication.clone()]);
    options.streaming = streaming;
    options.messages = false;
    options.binary = client.server_version_num() >= 140_000;
    let mut stream = client
        .start_replication(&settings.slot, params.start, &options)
        .await?;
    let flush = Arc::new(FlushTracker::new(
        cx.nodes.len(),
        params.start,
        stream.feedback(),
        cx.stats.clone(),
    ));

    let stop = cancel.child_token();
    let (input_tx, input_rx) = byte_queue::<Input>(INPUT_QUEUE_BYTES);
    let mut senders = Vec::with_capacity(writers.len());
    let mut tasks = Vec::with_capacity(writers.len());
    for (index, writer) in writers.into_iter().enumerate() {
        let (tx, rx) = byte_queue(settings.limits.queue_bytes as usize);
        senders.push(tx);
        let task = NodeTask {
            index,
            writer,
            rx,
            flush: flush.clone(),
            stats: cx.stats.clone(),
            stop: stop.clone(),
            batch_bytes: settings.limits.batch_bytes as usize,
            start: params.start,
        };
        let token = stop.clone();
        tasks.push(tokio::spawn(async move {
            let r = task.run().await;
            if r.is_err() {
                token.cancel();
            }
            r
        }));
    }
    let piece = (settings.limits.batch_bytes as usize / 4).clamp(64 * 1024, 1024 * 1024);
    let schema_stop = Arc::new(AtomicBool::new(false));
    let router = Router::new(
        cx.routes.clone(),
        senders,
        tokio::runtime::Handle::current(),
        cx.stats.clone(),
        RouterConfig {
            version: stream.proto_version(),
            start: params.start,
            node_progress,
            idempotent_until: params.idempotent_until,
            piece_bytes: piece,
            live_streams: settings.streamed_apply == StreamedApply::Live,
            publication: settings.publication.clone(),
            schema_stop: schema_stop.clone(),
        },
        SpillStore::new(
            settings.spill_dir.clone(),
            settings.limits.transaction_memory,
        ),
    );
    let router_token = stop.clone();
    let router_schema_stop = schema_stop.clone();
    let router_thread = std::thread::Builder::new()
        .name("pgwarp-router".into())
        .spawn(move || {
            let r = router.run(input_rx);
            // at a schema change the nodes finish their queues instead (see the router)
            if r.is_err() && !router_schema_stop.load(Ordering::Acquire) {
                router_token.cancel();
            }
            r
        })
        .map_err(|e| PipelineError::Internal(format!("could not start the router thread: {e}")))?;

    // on the runtime's workers, where the socket's readiness is noticed: waking it costs no
    // hand-over to another thread
    let replication = {
        let (stop, flush, stats) = (stop.clone(), flush.clone(), cx.stats.clone());
        tokio::spawn(async move {
            let ended =
                replicate(&mut stream, &input_tx, &stop, &flush, params.until, &stats).await;
            drop(input_tx);
            (stream, ended)
        })
    };
    let (stream, ended) = match replication.await {
        Ok((stream, ended)) => (Some(stream), ended),
        Err(e) => (
            None,
            Err(PipelineError::Internal(format!("replication task: {e}"))),
        ),
    };
    // stopped at a schema change: the nodes apply everything routed before it and end when
    // their queues close, so the last status update confirms exactly up to the change
    let draining = schema_stop.load(Ordering::Acquire);
    if !draining {
        stop.cancel();
    }

    let mut first_err: Option<PipelineError> = None;
    let router_result = tokio::task::spawn_blocking(move || router_thread.join())
        .await
        .map_err(|e| PipelineError::Internal(format!("router thread: {e}")))
        .and_then(|j| j.map_err(|_| PipelineError::Internal("the router thread panicked".into())))
        .and_then(|r| r);
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(PipelineError::Internal(format!("node task: {e}")));
            }
        }
    }
    match router_result {
        Ok(()) | Err(PipelineError::Stopped) => {}
        Err(e) => {
            first_err.get_or_insert(e);
        }
    }
    let stream_ok = ended.is_ok();
    let ended = match ended {
        Ok(end) => end,
        Err(e) => {
            first_err.get_or_insert(e);
            StreamEnd::Stopped
        }
    };
    if stream_ok && let Some(stream) = stream {
        // a last status update with exactly what every node committed
        match stream.stop().await {
            Ok(client) => {
                let _ = client.close().await;
            }
            Err(e) => tracing::warn!(error = %e, "could not end replication cleanly"),
        }
    }
    tracing::info!(flush = %flush.durable(), "streaming stopped");
    match first_err {
        Some(e) => Err(e),
        None => Ok(ended),
    }
}

/// The replication task's loop: one queue item per read of the socket.
async fn replicate(
    stream: &mut ReplicationStream,
    input: &QueueSender<Input>,
    stop: &CancellationToken,
    flush: &FlushTracker,
    until: Option<Lsn>,
    stats: &Stats,
) -> Result<StreamEnd, PipelineError> {
    let mut poll = tokio::time::interval(CATCH_UP_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Input = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(StreamEnd::Stopped),
            _ = poll.tick(), if until.is_some() => {
                let target = until.unwrap_or(Lsn::MAX);
                let durable = flush.durable();
                if durable >= target {
                    return Ok(StreamEnd::CaughtUp(durable));
                }
                // an idle server sends keepalives rarely: ask for one, so the position moves
                stream.send_status(true).await?;
                continue;
            }
            r = stream.next_batch(&mut batch, INPUT_BATCH_BYTES) => r?,
        };
        if batch.is_empty() {
            // the server ended streaming (a shutdown sends CopyDone or CommandComplete)
            return Err(PipelineError::StreamEnded("the source".into()));
        }
        let mut bytes = 0;
        for m in &batch {
            bytes += message_bytes(m);
            if let ReplicationMessage::PrimaryKeepalive(k) = m {
                stats
                    .source_wal_end
                    .fetch_max(k.wal_end.0, std::sync::atomic::Ordering::Relaxed);
            }
        }
        // wait for room, answering the server meanwhile
        let send = input.send(std::mem::take(&mut batch), bytes);
        tokio::pin!(send);
        let interval = stream.status_interval();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(StreamEnd::Stopped),
                r = &mut send => {
                    if r.is_err() {
                        // the router stopped; its error is reported by the caller
                        return Ok(StreamEnd::Stopped);
                    }
                    break;
                }
                () = tokio::time::sleep(interval) => stream.send_status(false).await?,
            }
        }
        if bytes < COALESCE_BELOW {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(StreamEnd::Stopped),
                () = tokio::time::sleep(COALESCE_WAIT) => {}
            }
        }
    }
}
