//! One dedicated connection to a node (a *lane*): applies batches, each in one transaction.
//!
//! ```text
//!  apply(batch) ─► plan (pure) ─► [ensure staging tables, type shapes]       outside the txn
//!                                 BEGIN; SELECT lsn FROM pgwarp.progress ... FOR UPDATE
//!                                 lsn >= batch? ──yes──► ROLLBACK, report skipped
//!                                 COPY rows into staging tables (one per table)
//!                                 steps: DELETE / UPDATE / move (pipelined), COPY into shards,
//!                                        TRUNCATE barriers
//!                                 upsert progress row; COMMIT
//! ```
//!
//! A transient failure (lost connection, admin shutdown, deadlock, serialization failure, or no
//! answer within `io_timeout`: a silent network cut) drops the connection, backs off,
//! reconnects and replays the *whole* batch in a new transaction.
//! Nothing is applied twice: a failed transaction rolled back, and one whose `COMMIT` went
//! through before the failure recorded its LSN, which the replay's progress check finds.
//!
//! Per connection the lane caches prepared statements (COPY per shard and format, and every
//! set-based statement, keyed by their text), the staging table of each table, and the type
//! shapes used to rewrite embedded OIDs.

use std::sync::Arc;
use std::time::Duration;

use pgwarp_decoder::Lsn;
use tracing::{debug, warn};

use crate::change::NodeBatch;
use crate::connector::Connector;
use crate::error::SinkError;
use crate::exec::{Conn, Ctx, run};
use crate::plan::{self, Counts, Plan};
use crate::progress;
use crate::writer::WriterConfig;

/// Runs `work` within `limit` (if any); past it, a [`SinkError::Timeout`]. The caller drops
/// the connection then, as for any transient failure, so nothing waits on it again.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    node: &str,
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, SinkError>>,
) -> Result<T, SinkError> {
    match limit {
        None => work.await,
        Some(after) => tokio::time::timeout(after, work).await.unwrap_or_else(|_| {
            Err(SinkError::Timeout {
                node: node.to_owned(),
                what,
                after,
            })
        }),
    }
}

/// What applying a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The node already held the batch (progress row at or past it); nothing was written.
    pub skipped: bool,
    /// Net rows written (zero when skipped).
    pub counts: Counts,
    /// Transactions tried (1 unless transient failures were retried).
    pub attempts: u32,
    /// The lane's recorded LSN after the batch.
    pub committed_lsn: Lsn,
}

/// One connection of a [`crate::NodeWriter`], with its own progress row.
pub struct Lane {
    index: usize,
    key: String,
    pub(crate) config: Arc<WriterConfig>,
    connector: Arc<dyn Connector>,
    pub(crate) conn: Option<Conn>,
    pub(crate) committed: Lsn,
}

impl Lane {
    pub(crate) fn new(
        index: usize,
        config: Arc<WriterConfig>,
        connector: Arc<dyn Connector>,
    ) -> Lane {
        let key = if index == 0 {
            config.node.clone()
        } else {
            format!("{}#{index}", config.node)
        };
        Lane::with_key(index, key, config, connector)
    }

    /// A lane writing the progress row of `key` (shared with another lane of the node: see
    /// [`crate::NodeWriter::stream_lane`]).
    pub(crate) fn with_key(
        index: usize,
        key: String,
        config: Arc<WriterConfig>,
        connector: Arc<dyn Connector>,
    ) -> Lane {
        Lane {
            index,
            key,
            config,
            connector,
            conn: None,
            committed: Lsn::INVALID,
        }
    }

    /// The lane's number within its node writer.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The `node` value of this lane's progress row: the node label, plus `#<lane>` after the
    /// first lane.
    pub fn progress_key(&self) -> &str {
        &self.key
    }

    /// The LSN recorded for this lane on the node (as of connecting or the last batch).
    pub fn committed_lsn(&self) -> Lsn {
        self.committed
    }

    /// The server process id of the current connection, if connected.
    pub fn backend_pid(&self) -> Option<i32> {
        self.conn.as_ref().map(|c| c.pid)
    }

    /// Connects (retrying transient failures), creates the progress table and row if needed,
    /// and reads the recorded LSN.
    pub async fn connect(&mut self) -> Result<Lsn, SinkError> {
        let mut attempt = 1;
        let mut backoff = self.config.retry.initial_backoff;
        let (limit, node) = (self.config.io_timeout, self.config.node.clone());
        loop {
            match within(limit, &node, "connect", self.ensure_conn()).await {
                Ok(()) => return Ok(self.committed),
                Err(err) if err.is_transient() && attempt < self.config.retry.max_attempts => {
                    warn!(node = %self.config.node, lane = self.index, attempt, error = %err,
                        "could not connect; retrying");
                    self.conn = None;
                    backoff = self.pause(backoff).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn pause(&self, backoff: Duration) -> Duration {
        tokio::time::sleep(backoff).await;
        (backoff * 2).min(self.config.retry.max_backoff)
    }

    async fn ensure_conn(&mut self) -> Result<(), SinkError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_some() {
            return Ok(());
        }
        let node = &self.config.node;
        let client = self
            .connector
            .connect()
            .await
            .map_err(|e| SinkError::Connect {
                node: node.clone(),
                transient: e.transient,
                source: e.source,
            })?;
        let err = |what| {
            move |source| SinkError::Node {
                node: node.clone(),
                lsn: Lsn::INVALID,
                what,
                source,
            }
        };
        // What a node commits is confirmed to the source, which may then discard it: the
        // commit must survive a crash of the node, whatever its default synchronous_commit.
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(err("set synchronous_commit to on"))?;
        if self.config.replica_role {
            client
                .batch_execute("SET session_replication_role = replica")
                .await
                .map_err(err("set session_replication_role to replica"))?;
        }
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(err("read the backend pid"))?;
        progress::ensure(&client, &self.config.slot, &self.key)
            .await
            .map_err(err("create the progress table"))?;
        let text = progress::read(&client, &self.config.slot, &self.key)
            .await
            .map_err(err("read the progress row"))?;
        self.committed =
            progress::parse(text.as_deref()).map_err(|reason| SinkError::Progress {
                node: node.clone(),
                slot: self.config.slot.clone(),
                reason,
            })?;
        debug!(node = %node, lane = self.index, pid, committed = %self.committed, "lane connected");
        self.conn = Some(Conn::new(client, pid));
        Ok(())
    }

    /// Applies a batch in one transaction, retrying transient failures from a new connection.
    pub async fn apply(&mut self, batch: &NodeBatch) -> Result<ApplyReport, SinkError> {
        if self.is_open() {
            return Err(SinkError::Config(format!(
                "a batch cannot be applied on node {} while a transaction is open on its lane",
                self.config.node
            )));
        }
        let plan = plan::build(batch)?;
        let mut attempt = 1;
        let mut backoff = self.config.retry.initial_backoff;
        let (limit, node) = (self.config.io_timeout, self.config.node.clone());
        loop {
            let result = match within(limit, &node, "connect", self.ensure_conn()).await {
                Ok(()) => within(limit, &node, "apply a batch", self.attempt(&plan, batch)).await,
                Err(err) => Err(err),
            };
            match result {
                Ok((skipped, lsn)) => {
                    self.committed = self.committed.max(lsn);
                    debug!(node = %self.config.node, lane = self.index, skipped, attempt,
                        lsn = %batch.last_commit_lsn, counts = ?plan.counts, "batch applied");
                    return Ok(ApplyReport {
                        skipped,
                        counts: if skipped {
                            Counts::default()
                        } else {
                            plan.counts
                        },
                        attempts: attempt,
                        committed_lsn: self.committed,
                    });
                }
                Err(err) if err.is_transient() && attempt < self.config.retry.max_attempts => {
                    warn!(node = %self.config.node, lane = self.index, attempt, error = %err,
                        "transient failure applying batch; reconnecting to replay it");
                    self.conn = None;
                    backoff = self.pause(backoff).await;
                    attempt += 1;
                }
                Err(err) => {
                    if err.is_transient() {
                        self.conn = None;
                    } else if let Some(conn) = &self.conn
                        && conn.client.batch_execute("ROLLBACK").await.is_err()
                    {
                        self.conn = None;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// One try: returns whether the batch was skipped and the recorded LSN.
    async fn attempt(&mut self, plan: &Plan, batch: &NodeBatch) -> Result<(bool, Lsn), SinkError> {
        let cx = Ctx {
            node: &self.config.node,
            slot: &self.config.slot,
            key: &self.key,
            lsn: batch.last_commit_lsn,
            frame: self.config.frame_bytes,
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(SinkError::Config("lane is not connected".into()));
        };
        run(conn, &cx, plan, batch).await
    }
}
