//! A transaction kept open on a lane across many calls: a large source transaction applied
//! piece by piece while it is still streaming, committed (with the progress row) or rolled
//! back only when the source says how it ended.
//!
//! ```text
//!  begin_open ─► BEGIN                                  (no progress lock: the node's other
//!  apply_open ─► [TRUNCATE used staging tables]          lane keeps committing batches under
//!                COPY staged rows, steps (as in a batch)  the same progress row meanwhile)
//!  savepoint / rollback_to_savepoint ─► SAVEPOINT / ROLLBACK TO SAVEPOINT  (subtransactions)
//!  commit_open(lsn) ─► lock progress row; recorded >= lsn? ROLLBACK (skipped)
//!                      : upsert progress; COMMIT
//!  rollback_open ─► ROLLBACK
//! ```
//!
//! Exactly-once holds as for a batch: the data and the progress row commit together, and the
//! progress check at commit rolls back a transaction the node already holds.
//!
//! Nothing is retried here: the pieces applied so far exist only in the open transaction, so a
//! lost connection loses them. Every failure drops the connection (the node rolls the
//! transaction back) and is returned as it is; the caller restarts from its source, which sends
//! the transaction again since it was never confirmed.
//!
//! Staging tables hold rows until commit (`ON COMMIT DELETE ROWS`), so each piece first empties
//! the ones an earlier piece of the transaction filled (`TRUNCATE` of a table created or
//! truncated in the same (sub)transaction is done in place by PostgreSQL). A staging table
//! created inside the open transaction disappears if it rolls back (wholly or to a savepoint),
//! so the connection then forgets it and creates a new one when next needed.

use pgwarp_decoder::Lsn;
use tracing::debug;

use crate::change::NodeBatch;
use crate::error::SinkError;
use crate::exec::{self, Conn, Ctx};
use crate::lane::{ApplyReport, Lane, within};
use crate::plan::{self, Counts};
use crate::write;

/// What a connection knows of its open transaction.
#[derive(Debug, Default)]
pub(crate) struct OpenState {
    /// Staging tables (by table id) created inside the transaction.
    pub(crate) created_stages: Vec<usize>,
    /// Staging tables holding rows of an earlier piece.
    dirty_stages: Vec<String>,
    /// Net rows written so far.
    counts: Counts,
    /// The savepoints set, with the rows written when each was set.
    savepoints: Vec<(u32, Counts)>,
}

/// The name of the savepoint for `id`.
fn savepoint_name(id: u32) -> String {
    format!("pgwarp_sp_{id}")
}

impl Conn {
    /// Forgets the staging tables created inside the open transaction, after a rollback (to a
    /// savepoint, or whole) that may have removed them. Which ones hold rows stays recorded:
    /// rows staged before a savepoint survive a rollback to it.
    fn forget_created_stages(&mut self) {
        if let Some(open) = &mut self.open {
            for id in open.created_stages.drain(..) {
                self.stages.remove(&id);
            }
        }
    }
}

fn accumulate(total: &mut Counts, add: Counts) {
    total.inserted += add.inserted;
    total.updated += add.updated;
    total.deleted += add.deleted;
    total.moved += add.moved;
    total.truncates += add.truncates;
}

impl Lane {
    /// Whether a transaction is open on this lane.
    pub fn is_open(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.open.is_some())
    }

    fn ctx(&self, lsn: Lsn) -> Ctx<'_> {
        Ctx {
            node: &self.config.node,
            slot: &self.config.slot,
            key: self.progress_key(),
            lsn,
            frame: self.config.frame_bytes,
        }
    }

    fn open_conn(&mut self) -> Result<&mut Conn, SinkError> {
        match self.conn.as_mut() {
            Some(c) if c.open.is_some() => Ok(c),
            _ => Err(SinkError::Config(format!(
                "no open transaction on node {}",
                self.config.node
            ))),
        }
    }

    /// Drops the connection after a failure inside the open transaction: the node rolls the
    /// transaction back, and nothing can be resumed from here.
    fn lose<T>(&mut self, result: Result<T, SinkError>) -> Result<T, SinkError> {
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Opens a transaction (connecting first if needed, retrying transient connection
    /// failures). The progress row is not touched until [`Lane::commit_open`].
    pub async fn begin_open(&mut self) -> Result<(), SinkError> {
        if self.is_open() {
            return Err(SinkError::Config(format!(
                "a transaction is already open on node {}",
                self.config.node
            )));
        }
        self.connect().await?;
        let (limit, node) = (self.config.io_timeout, self.config.node.clone());
        let begun = {
            let cx = self.ctx(Lsn::INVALID);
            match self.conn.as_ref() {
                Some(conn) => {
                    within(limit, &node, "begin a transaction", async {
                        conn.client
                            .batch_execute("BEGIN")
                            .await
                            .map_err(cx.node_err("begin"))
                    })
                    .await
                }
                None => Err(SinkError::Config("lane is not connected".into())),
            }
        };
        self.lose(begun)?;
        if let Some(conn) = self.conn.as_mut() {
            conn.open = Some(OpenState::default());
        }
        Ok(())
    }

    /// Applies `batch.changes` inside the open transaction (`batch.idempotent` is honoured;
    /// its LSNs are not used). Returns the net rows written by this piece.
    pub async fn apply_open(&mut self, batch: &NodeBatch) -> Result<Counts, SinkError> {
        let plan = plan::build(batch)?;
        let what = "apply a piece of an open transaction";
        self.in_open(Lsn::INVALID, what, async |conn, cx| {
            let prepared = exec::prepare(conn, cx, &plan).await?;
            let dirty: Vec<&String> = match &conn.open {
                Some(open) => prepared
                    .stage_names()
                    .iter()
                    .filter(|n| open.dirty_stages.contains(n))
                    .collect(),
                None => Vec::new(),
            };
            if !dirty.is_empty() {
                let names: Vec<&str> = dirty.iter().map(|n| n.as_str()).collect();
                conn.client
                    .batch_execute(&format!("TRUNCATE {}", names.join(", ")))
                    .await
                    .map_err(cx.node_err("empty the staging tables"))?;
            }
            write::write(conn, cx, &plan, &prepared).await?;
            if let Some(open) = &mut conn.open {
                for name in prepared.stage_names() {
                    if !open.dirty_stages.contains(name) {
                        open.dirty_stages.push(name.clone());
                    }
                }
                accumulate(&mut open.counts, plan.counts);
            }
            Ok(plan.counts)
        })
        .await
    }

    /// Sets savepoint `id` in the open transaction.
    pub async fn savepoint(&mut self, id: u32) -> Result<(), SinkError> {
        let text = format!("SAVEPOINT {}", savepoint_name(id));
        self.open_statement(&text, "set a savepoint").await?;
        if let Some(open) = self.conn.as_mut().and_then(|c| c.open.as_mut()) {
            open.savepoints.push((id, open.counts));
        }
        Ok(())
    }

    /// Rolls the open transaction back to savepoint `id` (which stays defined; later ones are
    /// released, as in PostgreSQL).
    pub async fn rollback_to_savepoint(&mut self, id: u32) -> Result<(), SinkError> {
        let text = format!("ROLLBACK TO SAVEPOINT {}", savepoint_name(id));
        self.open_statement(&text, "roll back to a savepoint")
            .await?;
        if let Some(conn) = self.conn.as_mut() {
            conn.forget_created_stages();
            if let Some(open) = &mut conn.open
                && let Some(at) = open.savepoints.iter().rposition(|(s, _)| *s == id)
            {
                // the savepoint stays; those set after it are gone
                open.counts = open.savepoints[at].1;
                open.savepoints.truncate(at + 1);
            }
        }
        Ok(())
    }

    async fn open_statement(&mut self, text: &str, what: &'static str) -> Result<(), SinkError> {
        self.in_open(Lsn::INVALID, what, async |conn, cx| {
            conn.client
                .batch_execute(text)
                .await
                .map_err(cx.node_err(what))
        })
        .await
    }

    /// Runs `work` on the open transaction's connection with the lane's context (at `lsn`),
    /// within the node timeout; a failure drops the connection (see [`Lane::lose`]).
    async fn in_open<T>(
        &mut self,
        lsn: Lsn,
        what: &'static str,
        work: impl AsyncFnOnce(&mut Conn, &Ctx<'_>) -> Result<T, SinkError>,
    ) -> Result<T, SinkError> {
        let (limit, node) = (self.config.io_timeout, self.config.node.clone());
        let config = self.config.clone();
        let key = self.progress_key().to_owned();
        let conn = self.open_conn()?;
        let cx = Ctx {
            node: &config.node,
            slot: &config.slot,
            key: &key,
            lsn,
            frame: config.frame_bytes,
        };
        let result = within(limit, &node, what, work(conn, &cx)).await;
        self.lose(result)
    }

    /// Commits the open transaction as the source transaction committed at `commit_lsn`,
    /// recording it in the progress row; if the node already recorded it (or later), rolls back
    /// instead and reports the transaction skipped.
    pub async fn commit_open(&mut self, commit_lsn: Lsn) -> Result<ApplyReport, SinkError> {
        let what = "commit an open transaction";
        let (skipped, lsn) = self
            .in_open(commit_lsn, what, async |conn, cx| {
                let recorded = exec::lock_progress(conn, cx).await?;
                if recorded >= commit_lsn {
                    conn.client
                        .batch_execute("ROLLBACK")
                        .await
                        .map_err(cx.node_err("roll back"))?;
                    return Ok((true, recorded));
                }
                exec::commit(conn, cx).await?;
                Ok((false, commit_lsn))
            })
            .await?;
        let mut counts = Counts::default();
        if let Some(conn) = self.conn.as_mut() {
            if skipped {
                conn.forget_created_stages();
            }
            if let Some(open) = conn.open.take()
                && !skipped
            {
                counts = open.counts;
            }
        }
        self.committed = self.committed.max(lsn);
        debug!(node = %self.config.node, lane = self.index(), skipped, lsn = %commit_lsn,
            counts = ?counts, "open transaction committed");
        Ok(ApplyReport {
            skipped,
            counts,
            attempts: 1,
            committed_lsn: self.committed,
        })
    }

    /// Rolls the open transaction back (a source transaction that aborted).
    pub async fn rollback_open(&mut self) -> Result<(), SinkError> {
        self.open_statement("ROLLBACK", "roll back").await?;
        if let Some(conn) = self.conn.as_mut() {
            conn.forget_created_stages();
            conn.open = None;
        }
        Ok(())
    }
}
