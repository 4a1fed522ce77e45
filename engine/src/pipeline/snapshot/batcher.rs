//! A reader's per-node batches: tuples appended to their shard's buffer as they are routed,
//! cut into batches for the node writers.
//!
//! When to cut is a trade between memory and the nodes' work: each batch writes each of its
//! shards with one COPY statement, and a COPY costs the node a fixed amount besides its rows
//! (on PostgreSQL 15 a binary COPY also does work quadratic in its first thousand rows), so
//! rows per COPY should be many. The reader therefore gathers up to `snapshot_batch_bytes`
//! over all nodes, and each node's writer, whenever it is idle, takes the node's rows
//! gathered so far (once they reach `MIN_BATCH_DIVISOR`-th of that, so at the start the
//! writers need not wait for full batches). When the reader is the faster side, it stops at
//! `snapshot_batch_bytes` until a writer is done: batches then grow to about
//! `snapshot_batch_bytes / nodes` and their COPYs to `snapshot_batch_bytes / shards` bytes,
//! however many nodes the cluster has, and the reader's memory does not grow with the
//! cluster either.
//!
//! Batches are not cut at chunk boundaries: the tail of one chunk rides with the head of the
//! next, so a table split into many chunks costs no more transactions (and COPY statements)
//! on the nodes than one big chunk. The chunk's completion is tracked instead by batch number
//! (see [`super::writer`]): [`Batcher::marks`] says which batch on each node holds a chunk's
//! last rows.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pgwarp_decoder::Lsn;
use pgwarp_sink::{Change, NodeBatch, Shard};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::super::error::PipelineError;
use super::super::routes::RouteTable;
use super::writer::{Budget, SnapshotWriter};

/// A node whose writer is idle gets its rows once they reach this fraction of the reader's
/// `snapshot_batch_bytes`.
const MIN_BATCH_DIVISOR: usize = 16;

/// How much a node's rows grow between two looks at whether its writer is idle.
const IDLE_CHECK_BYTES: usize = 64 * 1024;

/// Bytes of a shard's rows kept in one block: rows are gathered in blocks of this size rather
/// than in one growing buffer, so memory stays close to the bytes gathered (no buffer twice
/// the size after its last doubling) and nothing is copied twice. A batch carries each block
/// as its own chunk of the shard's one COPY.
const BLOCK_BYTES: usize = 64 * 1024;

/// One shard table's rows for the batch being built.
struct ShardRows {
    shard: Shard,
    /// Full blocks, with their row counts.
    blocks: Vec<(Bytes, u64)>,
    /// The block being filled, and its rows.
    block: BytesMut,
    block_rows: u64,
}

impl ShardRows {
    fn seal(&mut self) {
        if !self.block.is_empty() {
            let block = std::mem::take(&mut self.block).freeze();
            self.blocks
                .push((block, std::mem::take(&mut self.block_rows)));
        }
    }
}

/// The batch being built for one node: rows grouped by shard, tuples back to back as the COPY
/// stream had them.
#[derive(Default)]
struct NodeBuf {
    shards: Vec<ShardRows>,
    /// `shards` index by shard (pointer identity: routes hold every shard for the whole run).
    index: HashMap<usize, usize>,
    bytes: usize,
    /// At this many bytes, look whether the writer is idle.
    check_at: usize,
    /// Holds rows of a chunk that was read to its end.
    tail: bool,
}

impl NodeBuf {
    fn slot(&mut self, shard: &Shard) -> usize {
        let key = Arc::as_ptr(shard) as usize;
        *self.index.entry(key).or_insert_with(|| {
            self.shards.push(ShardRows {
                shard: shard.clone(),
                blocks: Vec::new(),
                block: BytesMut::new(),
                block_rows: 0,
            });
            self.shards.len() - 1
        })
    }

    #[inline]
    fn push(&mut self, slot: usize, tuple: &[u8]) {
        if let Some(s) = self.shards.get_mut(slot) {
            if s.block.capacity() - s.block.len() < tuple.len() {
                s.seal();
                s.block = BytesMut::with_capacity(BLOCK_BYTES.max(tuple.len()));
            }
            s.block.extend_from_slice(tuple);
            s.block_rows += 1;
            self.bytes += tuple.len();
        }
    }

    fn take(&mut self) -> Vec<Change> {
        self.bytes = 0;
        self.check_at = 0;
        self.tail = false;
        let mut changes = Vec::new();
        for s in &mut self.shards {
            s.seal();
            changes.extend(s.blocks.drain(..).map(|(data, rows)| Change::InsertRows {
                shard: s.shard.clone(),
                data,
                rows,
            }));
        }
        changes
    }
}

/// Where a chunk's rows of one shard go: `(node, slot in that node's buffer)` per placement,
/// resolved on the shard's first row in the chunk.
pub struct ShardSlots {
    slots: Vec<Option<Vec<(usize, usize)>>>,
}

impl ShardSlots {
    /// Empty slots for `rt`'s shards.
    pub fn new(rt: &RouteTable) -> ShardSlots {
        ShardSlots {
            slots: vec![None; rt.shards.len()],
        }
    }
}

/// How the batches of the current jobs are applied (all jobs of one run share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Plain COPY (first run).
    Fresh,
    /// Upsert (resumed).
    Idempotent,
}

/// The reader's batches, writers and write budget.
pub struct Batcher {
    bufs: Vec<NodeBuf>,
    writers: Vec<SnapshotWriter>,
    committed: Vec<watch::Receiver<u64>>,
    /// Signalled by the writers after each batch.
    progress: Arc<Notify>,
    budget: Budget,
    /// Bytes gathered over all nodes before the fullest node's batch is cut.
    cap: usize,
    /// Smallest batch sent to an idle writer.
    min: usize,
    /// Bytes gathered over all nodes.
    total: usize,
    kind: BatchKind,
}

impl Batcher {
    /// A batcher gathering up to `cap` bytes over all nodes, with `budget` bytes queued or
    /// being written at most over all writers, which signal `progress` after each batch.
    pub fn new(
        writers: Vec<SnapshotWriter>,
        progress: Arc<Notify>,
        cap: usize,
        budget: Budget,
    ) -> Batcher {
        let cap = cap.max(1);
        Batcher {
            bufs: writers.iter().map(|_| NodeBuf::default()).collect(),
            committed: writers.iter().map(SnapshotWriter::committed).collect(),
            writers,
            progress,
            budget,
            cap,
            min: (cap / MIN_BATCH_DIVISOR).max(1),
            total: 0,
            kind: BatchKind::Fresh,
        }
    }

    /// The writers' commit watches, by node.
    pub fn committed(&self) -> Vec<watch::Receiver<u64>> {
        self.committed.clone()
    }

    /// Switches to `kind`, first sending what was built under the other one. Returns false
    /// when stopped.
    pub async fn set_kind(
        &mut self,
        kind: BatchKind,
        stop: &CancellationToken,
    ) -> Result<bool, PipelineError> {
        if kind != self.kind {
            if !self.flush(Some(stop)).await? {
                return Ok(false);
            }
            self.kind = kind;
        }
        Ok(true)
    }

    /// Appends a tuple of shard `index` of `rt` to every placement's batch; true when a batch
    /// is due (send it with [`Batcher::send_due`] before the next push).
    #[inline]
    pub fn push(
        &mut self,
        rt: &RouteTable,
        slots: &mut ShardSlots,
        index: usize,
        tuple: &[u8],
    ) -> Result<bool, PipelineError> {
        let resolved = match slots.slots.get_mut(index) {
            Some(Some(resolved)) => resolved,
            Some(entry) => {
                let placements = rt.shards.get(index).ok_or_else(|| {
                    PipelineError::Internal(format!("no shard {index} for \"{}\"", rt.name))
                })?;
                let mut resolved = Vec::with_capacity(placements.len());
                for (node, shard) in placements {
                    let buf = self.bufs.get_mut(*node).ok_or_else(|| {
                        PipelineError::Internal(format!("no writer for node {node}"))
                    })?;
                    resolved.push((*node, buf.slot(shard)));
                }
                entry.insert(resolved)
            }
            None => {
                return Err(PipelineError::Internal(format!(
                    "no shard {index} for \"{}\"",
                    rt.name
                )));
            }
        };
        let mut due = false;
        for &(node, slot) in resolved.iter() {
            let Some(buf) = self.bufs.get_mut(node) else {
                continue;
            };
            buf.push(slot, tuple);
            self.total += tuple.len();
            if buf.bytes >= self.min && buf.bytes >= buf.check_at {
                let committed = &self.committed[node];
                if *committed.borrow() >= self.writers[node].sent() {
                    due = true;
                } else {
                    buf.check_at = buf.bytes + IDLE_CHECK_BYTES;
                }
            }
        }
        Ok(due || self.total >= self.cap)
    }

    /// Sends the batches that are due: every idle writer's, once big enough; and while the
    /// rows gathered are at the cap, waits for a writer to be done and sends it its node's
    /// rows. Returns false when stopped while waiting (the batches stay unsent).
    pub async fn send_due(&mut self, stop: &CancellationToken) -> Result<bool, PipelineError> {
        for node in 0..self.bufs.len() {
            if self.bufs[node].bytes >= self.min
                && self.idle(node)
                && !self.send(node, Some(stop)).await?
            {
                return Ok(false);
            }
        }
        while self.total >= self.cap {
            let idle = (0..self.bufs.len())
                .filter(|&n| self.bufs[n].bytes > 0 && self.idle(n))
                .max_by_key(|&n| self.bufs[n].bytes);
            let done = match idle {
                Some(node) => self.send(node, Some(stop)).await?,
                None => {
                    let progress = self.progress.clone();
                    let waited = async move {
                        progress.notified().await;
                        Ok(())
                    };
                    until_stopped(waited, Some(stop)).await?.is_some()
                }
            };
            if !done {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `node`'s writer has committed everything sent to it (or has stopped, which
    /// the next send to it reports).
    fn idle(&self, node: usize) -> bool {
        let committed = &self.committed[node];
        *committed.borrow() >= self.writers[node].sent() || committed.has_changed().is_err()
    }

    /// Notes that a chunk was read to its end; returns, by node, the number of the batch
    /// that holds (or will hold) its last rows there: the chunk is done once every node has
    /// committed that batch.
    pub fn marks(&mut self) -> Vec<u64> {
        self.bufs
            .iter_mut()
            .zip(&self.writers)
            .map(|(buf, w)| {
                if buf.bytes > 0 {
                    buf.tail = true;
                    w.sent() + 1
                } else {
                    w.sent()
                }
            })
            .collect()
    }

    /// Sends every node's rows. With `stop`, returns false if stopped while waiting for room.
    pub async fn flush(&mut self, stop: Option<&CancellationToken>) -> Result<bool, PipelineError> {
        for node in 0..self.bufs.len() {
            if self.bufs[node].bytes > 0 && !self.send(node, stop).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// After a stop: sends the batches that hold the last rows of chunks read to their end,
    /// so those chunks can still be recorded. Best effort: a failing writer reports its error
    /// when closed.
    pub async fn flush_tails(&mut self) {
        for node in 0..self.bufs.len() {
            if self.bufs[node].tail && self.send(node, None).await.is_err() {
                self.bufs[node].tail = false;
            }
        }
    }

    /// Sends `node`'s batch once the budget and the writer's queue have room; false (nothing
    /// sent, the batch intact) if `stop` fires first.
    async fn send(
        &mut self,
        node: usize,
        stop: Option<&CancellationToken>,
    ) -> Result<bool, PipelineError> {
        if stop.is_some_and(CancellationToken::is_cancelled) {
            return Ok(false);
        }
        let bytes = self.bufs[node].bytes;
        let Some(share) = until_stopped(self.budget.reserve(bytes), stop).await? else {
            return Ok(false);
        };
        let writer = &mut self.writers[node];
        let Some(slot) = until_stopped(writer.reserve(), stop).await? else {
            return Ok(false);
        };
        self.total -= bytes;
        let changes = self.bufs[node].take();
        let batch = match self.kind {
            BatchKind::Fresh => NodeBatch::complete(changes, Lsn::INVALID),
            BatchKind::Idempotent => NodeBatch::snapshot_chunk(changes),
        };
        writer.send(slot, batch, share);
        Ok(true)
    }

    /// Stops the writers after what was sent; the first error.
    pub async fn close(self) -> Result<(), PipelineError> {
        let mut first_err = None;
        for w in self.writers {
            if let Err(e) = w.close().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `work`'s result, or `None` if `stop` fires first.
async fn until_stopped<T>(
    work: impl Future<Output = Result<T, PipelineError>>,
    stop: Option<&CancellationToken>,
) -> Result<Option<T>, PipelineError> {
    match stop {
        None => work.await.map(Some),
        Some(stop) => tokio::select! {
            biased;
            r = work => r.map(Some),
            () = stop.cancelled() => Ok(None),
        },
    }
}

#[cfg(test)]
mod tests {
    use pgwarp_sink::{ShardTarget, TargetTable};

    use super::*;

    fn shard(table: &Arc<TargetTable>, name: &str) -> Shard {
        Arc::new(ShardTarget::new(table.clone(), "public", name))
    }

    #[test]
    fn node_rows_are_grouped_by_shard_in_arrival_order_and_taken_whole() {
        let table =
            Arc::new(TargetTable::new("public.t", vec!["id".into()], vec![0], true).unwrap());
        let (a, b) = (shard(&table, "t_1"), shard(&table, "t_2"));
        let mut buf = NodeBuf::default();
        let (sa, sb) = (buf.slot(&a), buf.slot(&b));
        assert_eq!(buf.slot(&a), sa, "a shard keeps its slot");
        buf.push(sb, b"b1");
        buf.push(sa, b"a1");
        buf.push(sb, b"b22");
        assert_eq!(buf.bytes, 7);
        buf.tail = true;
        let taken: Vec<(String, Vec<u8>, u64)> = buf
            .take()
            .into_iter()
            .map(|c| match c {
                Change::InsertRows { shard, data, rows } => {
                    (shard.quoted_name().to_owned(), data.to_vec(), rows)
                }
                _ => panic!("not bulk rows"),
            })
            .collect();
        // slots in first-seen order (a's slot came first), each shard's tuples in order
        assert_eq!(
            taken,
            vec![
                (r#""public"."t_1""#.to_owned(), b"a1".to_vec(), 1),
                (r#""public"."t_2""#.to_owned(), b"b1b22".to_vec(), 2)
            ]
        );
        assert_eq!((buf.bytes, buf.tail), (0, false));
        assert!(buf.take().is_empty(), "only shards with rows are written");
        // a shard's rows beyond a block go in further blocks of the same batch, none split
        let tuple = vec![7u8; 1000];
        for _ in 0..100 {
            buf.push(sa, &tuple);
        }
        let blocks: Vec<(usize, u64)> = buf
            .take()
            .into_iter()
            .map(|c| match c {
                Change::InsertRows { data, rows, .. } => (data.len(), rows),
                _ => panic!("not bulk rows"),
            })
            .collect();
        assert_eq!(blocks, vec![(65_000, 65), (35_000, 35)]);
        // a tuple larger than a block gets a block of its own
        buf.push(sb, b"x");
        buf.push(sb, &vec![1u8; BLOCK_BYTES + 1]);
        let sizes: Vec<usize> = buf
            .take()
            .into_iter()
            .map(|c| match c {
                Change::InsertRows { data, .. } => data.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, vec![1, BLOCK_BYTES + 1]);
    }
}
