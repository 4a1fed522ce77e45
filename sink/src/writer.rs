//! A node writer: the lanes (connections) to one node, and their configuration.
//!
//! Each lane is an independent writer with its own transaction stream and its own progress row,
//! so the engine may drive lanes from separate tasks (for example, one lane per group of
//! shards during a snapshot). Per-key order only holds within a lane: the engine must send all
//! changes of a shard through the same lane, and keep the number of lanes fixed while a slot is
//! in use, since each lane's progress row only speaks for the shards that lane was given.
//!
//! A node writer may also have a *stream lane* ([`NodeWriter::stream_lane`]): one more
//! connection that shares the first lane's progress row, for a transaction kept open while the
//! first lane goes on committing batches (a large source transaction applied as it streams,
//! while transactions that commit before it are applied beside it). The two never hold the
//! progress row at once: an open transaction locks it only to commit, and the engine commits
//! it only when the first lane is idle.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use pgwarp_decoder::Lsn;

use crate::change::NodeBatch;
use crate::connector::Connector;
use crate::error::SinkError;
use crate::lane::{ApplyReport, Lane};

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Transactions tried per batch (and connection attempts at start) before giving up.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each.
    pub initial_backoff: Duration,
    /// Upper bound of the wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 100 ms doubling up to 10 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Configuration of a [`NodeWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Replication slot name: the first half of the progress key.
    pub slot: String,
    /// Node label (e.g. `worker-1:5432`): the second half of the progress key, and in messages.
    pub node: String,
    /// Connections to the node. Default 1.
    pub lanes: usize,
    /// Run with `session_replication_role = replica`, as PostgreSQL's apply worker does:
    /// triggers and foreign-key checks already ran on the source and do not fire again, and
    /// statement order across tables does not matter. Needs a superuser (or, on PostgreSQL
    /// 15, a role granted `SET` on the parameter). Default on.
    pub replica_role: bool,
    /// Size of COPY data frames handed to the connection. Default 64 KiB.
    pub frame_bytes: usize,
    /// Retry of transient failures.
    pub retry: RetryPolicy,
    /// How long one try (connecting, or a batch's whole transaction) may go without finishing
    /// before the connection counts as lost, a transient failure: a node behind a silent
    /// network cut never answers, and TCP keepalives do not fire while a request is
    /// outstanding. `None` (the default): no limit.
    pub io_timeout: Option<Duration>,
}

impl WriterConfig {
    /// The defaults for a slot and node.
    pub fn new(slot: impl Into<String>, node: impl Into<String>) -> WriterConfig {
        WriterConfig {
            slot: slot.into(),
            node: node.into(),
            lanes: 1,
            replica_role: true,
            frame_bytes: 64 * 1024,
            retry: RetryPolicy::default(),
            io_timeout: None,
        }
    }

    fn validate(&self) -> Result<(), SinkError> {
        if self.slot.is_empty() || self.node.is_empty() {
            return Err(SinkError::Config("slot and node must not be empty".into()));
        }
        if self.lanes == 0 || self.lanes > 64 {
            return Err(SinkError::Config(format!(
                "lanes must be 1 to 64, not {}",
                self.lanes
            )));
        }
        if self.frame_bytes < 4096 || self.frame_bytes > 64 * 1024 * 1024 {
            return Err(SinkError::Config(format!(
                "frame_bytes must be 4 KiB to 64 MiB, not {}",
                self.frame_bytes
            )));
        }
        if self.retry.max_attempts == 0 {
            return Err(SinkError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The writer for one node: one or more [`Lane`]s.
pub struct NodeWriter {
    lanes: Vec<Lane>,
    stream: Option<Lane>,
    connector: Arc<dyn Connector>,
}

impl NodeWriter {
    /// Opens every lane, creating `pgwarp.progress` on the node if needed, and reads the
    /// recorded LSNs.
    pub async fn connect(
        connector: Arc<dyn Connector>,
        config: WriterConfig,
    ) -> Result<NodeWriter, SinkError> {
        config.validate()?;
        let config = Arc::new(config);
        let mut lanes: Vec<Lane> = (0..config.lanes)
            .map(|i| Lane::new(i, config.clone(), connector.clone()))
            .collect();
        for lane in &mut lanes {
            lane.connect().await?;
        }
        Ok(NodeWriter {
            lanes,
            stream: None,
            connector,
        })
    }

    /// The stream lane, connected on first use: a connection writing the first lane's progress
    /// row, for transactions kept open across calls ([`Lane::begin_open`]). Changes it applies
    /// must not conflict with what the first lane writes while its transaction is open (for a
    /// source transaction applied as it streams, the source's own locks guarantee that: every
    /// transaction committing before it touched other rows), and its commit must wait until
    /// the first lane is idle, so that the progress row only moves forward in commit order.
    pub async fn stream_lane(&mut self) -> Result<&mut Lane, SinkError> {
        let Some(first) = self.lanes.first() else {
            return Err(SinkError::Config("node writer has no lanes".into()));
        };
        let lane = match self.stream.take() {
            Some(lane) => lane,
            None => {
                let mut lane = Lane::with_key(
                    self.lanes.len(),
                    first.progress_key().to_owned(),
                    first.config.clone(),
                    self.connector.clone(),
                );
                lane.connect().await?;
                lane
            }
        };
        Ok(self.stream.insert(lane))
    }

    /// The LSN up to which the node holds every source transaction: the minimum over lanes.
    /// The engine skips transactions at or before it for this node, and never confirms a flush
    /// position to the source beyond the minimum over all nodes.
    pub fn committed_lsn(&self) -> Lsn {
        self.lanes
            .iter()
            .map(Lane::committed_lsn)
            .min()
            .unwrap_or(Lsn::INVALID)
    }

    /// The lanes.
    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    /// The lanes, to drive them one by one.
    pub fn lanes_mut(&mut self) -> &mut [Lane] {
        &mut self.lanes
    }

    /// The lanes, to move them into their own tasks.
    pub fn into_lanes(self) -> Vec<Lane> {
        self.lanes
    }

    /// Applies a batch on the first lane.
    pub async fn apply(&mut self, batch: &NodeBatch) -> Result<ApplyReport, SinkError> {
        match self.lanes.first_mut() {
            Some(lane) => lane.apply(batch).await,
            None => Err(SinkError::Config("node writer has no lanes".into())),
        }
    }

    /// Applies `batches[i]` on lane `i`, all lanes at once; each batch commits on its own.
    pub async fn apply_per_lane(
        &mut self,
        batches: &[NodeBatch],
    ) -> Result<Vec<ApplyReport>, SinkError> {
        if batches.len() > self.lanes.len() {
            return Err(SinkError::Config(format!(
                "{} batches for {} lanes",
                batches.len(),
                self.lanes.len()
            )));
        }
        try_join_all(
            self.lanes
                .iter_mut()
                .zip(batches)
                .map(|(lane, batch)| lane.apply(batch)),
        )
        .await
    }
}
