//! From a batch to an ordered list of set-based steps (pure: no I/O).
//!
//! A batch is cut into segments at each `TRUNCATE` (a barrier). Within a segment:
//!
//! * tables with a unique key go through the [`Compactor`] (net effect per row), and their
//!   operations run in three phases: deletes (and the delete half of moves), updates grouped by
//!   the set of columns present, inserts (direct COPY, or staged upserts in idempotent mode, and
//!   the insert half of moves). A table with only inserts in the segment skips compaction;
//! * tables without one (`REPLICA IDENTITY FULL` and no unique index) keep source order: their
//!   changes are cut into runs of one kind on one shard that never touch a row twice, and each
//!   run becomes one statement.
//!
//! Rows an update or delete needs are *staged*: written by one COPY per table into a temporary
//! table on the connection, tagged with a group number that the step's statement selects.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::change::{Change, NodeBatch};
use crate::compact::NetOp;
use crate::error::SinkError;
use crate::image::{Image, KeyVals};
use crate::row::{Row, RowFormat};
use crate::runs::{Run, RunKind};
use crate::segment::{Grouped, Inserts, Segment, split_rows, staged};
use crate::target::{Shard, TargetTable, table_id};

/// The steps for one batch.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Rows to stage, one entry per table.
    pub(crate) stages: Vec<StageRows>,
    /// Steps in execution order.
    pub(crate) steps: Vec<Step>,
    /// Net rows per operation kind.
    pub(crate) counts: Counts,
}

/// Net row counts of a plan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Rows inserted (including the insert half of replacements).
    pub inserted: u64,
    /// Rows updated in place.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Rows moved (key or shard changed with unchanged TOAST values).
    pub moved: u64,
    /// `TRUNCATE` statements.
    pub truncates: u64,
}

/// Rows staged for one table.
#[derive(Debug)]
pub(crate) struct StageRows {
    pub(crate) table: Arc<TargetTable>,
    /// A shard of the table on this node, to derive the staging table's column types from.
    pub(crate) sample: Shard,
    pub(crate) format: RowFormat,
    pub(crate) rows: Vec<StagedRow>,
}

/// One staged row.
#[derive(Debug)]
pub(crate) struct StagedRow {
    pub(crate) group: i32,
    pub(crate) values: Staged,
    /// The old key, for statements that match on it (moves, in-order updates).
    pub(crate) old_key: Option<KeyVals>,
}

/// The column values of a staged row.
#[derive(Debug)]
pub(crate) enum Staged {
    /// Only the key columns (others NULL).
    Key(KeyVals),
    /// A row image; unchanged columns are staged as NULL.
    Image(Image),
}

/// One step.
#[derive(Debug)]
pub(crate) enum Step {
    /// COPY complete rows straight into a shard.
    Copy {
        shard: Shard,
        format: RowFormat,
        rows: Vec<Image>,
        /// Bulk binary COPY tuples and their row counts, forwarded after `rows`.
        chunks: Vec<(Bytes, u64)>,
    },
    /// A set-based statement over staged group `group`.
    Sql {
        shard: Shard,
        op: SqlOp,
        group: i32,
        /// Outside idempotent mode: the statement must affect at least this many rows.
        expect: Option<u64>,
    },
    /// `TRUNCATE` of the shards.
    Truncate {
        shards: Vec<Shard>,
        cascade: bool,
        restart_identity: bool,
    },
}

/// A set-based statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlOp {
    /// Delete the rows whose key matches a staged row's key columns (`by_old`: old-key columns).
    Delete { by_old: bool },
    /// Set `set` columns from the staged rows, matching as for `Delete`.
    Update { set: Vec<usize>, by_old: bool },
    /// Delete the rows matching staged old keys and copy their `missing` columns into the staged
    /// rows, marking them filled.
    Capture { missing: Vec<usize> },
    /// Insert the staged rows (only filled ones when `captured`); `upsert`: on a unique key
    /// `ON CONFLICT DO UPDATE`, else only rows whose key is absent.
    Insert { captured: bool, upsert: bool },
}

impl SqlOp {
    /// What the statement does, for messages.
    pub(crate) fn what(&self) -> &'static str {
        match self {
            SqlOp::Delete { .. } => "delete rows from",
            SqlOp::Update { .. } => "update rows of",
            SqlOp::Capture { .. } => "move rows out of",
            SqlOp::Insert { .. } => "insert staged rows into",
        }
    }

    /// The operation, for divergence reports.
    pub(crate) fn noun(&self) -> &'static str {
        match self {
            SqlOp::Delete { .. } => "delete",
            SqlOp::Update { .. } => "update",
            SqlOp::Capture { .. } => "move",
            SqlOp::Insert { .. } => "insert",
        }
    }
}

/// The shard a row change writes (`None` for `TRUNCATE`).
fn change_shard(change: &Change) -> Option<&Shard> {
    match change {
        Change::Insert { shard, .. }
        | Change::InsertRows { shard, .. }
        | Change::Update { shard, .. }
        | Change::Delete { shard, .. } => Some(shard),
        Change::Truncate { .. } => None,
    }
}

/// Builds the plan for a batch.
pub(crate) fn build(batch: &NodeBatch) -> Result<Plan, SinkError> {
    let mut b = Builder {
        idempotent: batch.idempotent,
        ..Builder::default()
    };
    let mut start = 0;
    // A shard table written under two definitions of its table in one batch (the engine
    // routes changes from before an ADD COLUMN with the older column list) is two shards to
    // the compactor, whose phase order would then reorder its rows: cut a segment there.
    let mut definitions: HashMap<&str, usize> = HashMap::new();
    for (i, change) in batch.changes.iter().enumerate() {
        b.check_format(change)?;
        if let Some(shard) = change_shard(change) {
            let id = table_id(shard.table());
            if definitions
                .insert(shard.quoted_name(), id)
                .is_some_and(|before| before != id)
            {
                b.segment(&batch.changes[start..i])?;
                start = i;
                definitions.clear();
                definitions.insert(shard.quoted_name(), id);
            }
        }
        if let Change::Truncate {
            shards,
            cascade,
            restart_identity,
        } = change
        {
            b.segment(&batch.changes[start..i])?;
            if !shards.is_empty() {
                b.plan.steps.push(Step::Truncate {
                    shards: shards.clone(),
                    cascade: *cascade,
                    restart_identity: *restart_identity,
                });
                b.plan.counts.truncates += 1;
            }
            start = i + 1;
        }
    }
    b.segment(&batch.changes[start..])?;
    let mut plan = b.plan;
    plan.stages = b
        .stage_order
        .into_iter()
        .filter_map(|t| b.stages.remove(&t))
        .collect();
    Ok(plan)
}

#[derive(Default)]
struct Builder {
    idempotent: bool,
    plan: Plan,
    formats: HashMap<usize, RowFormat>,
    last_format: Option<(usize, RowFormat)>,
    stages: HashMap<usize, StageRows>,
    stage_order: Vec<usize>,
    next_group: i32,
}

impl Builder {
    /// Records the table's row format; a table's rows must share one format within a batch.
    fn check_format(&mut self, change: &Change) -> Result<(), SinkError> {
        let (shard, rows): (&Shard, [Option<&Row>; 2]) = match change {
            Change::Insert { shard, row } => (shard, [Some(row), None]),
            Change::Update {
                shard,
                old_key,
                new,
                ..
            } => (shard, [Some(new), old_key.as_ref()]),
            Change::Delete { shard, key } => (shard, [Some(key), None]),
            Change::InsertRows { shard, .. } => {
                return self.set_format(shard.table(), RowFormat::Binary);
            }
            Change::Truncate { .. } => return Ok(()),
        };
        let table = shard.table();
        for row in rows.into_iter().flatten() {
            if let Some(f) = row.format(table.name())? {
                self.set_format(table, f)?;
            }
        }
        Ok(())
    }

    fn set_format(&mut self, table: &Arc<TargetTable>, f: RowFormat) -> Result<(), SinkError> {
        let id = table_id(table);
        if self.last_format == Some((id, f)) {
            return Ok(());
        }
        match self.formats.get(&id) {
            None => {
                self.formats.insert(id, f);
            }
            Some(&g) if g != f => {
                return Err(SinkError::InvalidRow {
                    table: table.name().to_owned(),
                    reason: "batch mixes text and binary rows for one table".into(),
                });
            }
            Some(_) => {}
        }
        self.last_format = Some((id, f));
        Ok(())
    }

    fn format(&self, table: &Arc<TargetTable>) -> RowFormat {
        self.formats
            .get(&table_id(table))
            .copied()
            .unwrap_or(RowFormat::Binary)
    }

    /// Adds rows to the table's stage under a new group number.
    fn stage(&mut self, shard: &Shard, rows: Vec<StagedRow>) -> i32 {
        let table = shard.table();
        let group = self.next_group;
        self.next_group += 1;
        let format = self.format(table);
        let entry = self.stages.entry(table_id(table)).or_insert_with(|| {
            self.stage_order.push(table_id(table));
            StageRows {
                table: table.clone(),
                sample: shard.clone(),
                format,
                rows: Vec::new(),
            }
        });
        entry
            .rows
            .extend(rows.into_iter().map(|r| StagedRow { group, ..r }));
        group
    }

    fn sql(&mut self, shard: &Shard, op: SqlOp, rows: Vec<StagedRow>) {
        let n = rows.len() as u64;
        let group = self.stage(shard, rows);
        let expect = match op {
            SqlOp::Delete { .. } | SqlOp::Update { .. } | SqlOp::Capture { .. }
                if !self.idempotent =>
            {
                Some(n)
            }
            _ => None,
        };
        self.plan.steps.push(Step::Sql {
            shard: shard.clone(),
            op,
            group,
            expect,
        });
    }

    fn inserts(&mut self, ins: Inserts) -> Result<(), SinkError> {
        let Inserts {
            shard,
            mut images,
            chunks,
        } = ins;
        if !self.idempotent {
            self.plan.counts.inserted +=
                images.len() as u64 + chunks.iter().map(|(_, n)| n).sum::<u64>();
            let format = self.format(shard.table());
            self.plan.steps.push(Step::Copy {
                shard: shard.clone(),
                format,
                rows: images,
                chunks,
            });
            return Ok(());
        }
        for (data, rows) in &chunks {
            images.extend(split_rows(&shard, data, *rows)?.into_iter().map(Image::Row));
        }
        self.plan.counts.inserted += images.len() as u64;
        let shard = &shard;
        let table = shard.table().clone();
        let non_key: Vec<usize> = (0..table.columns().len())
            .filter(|&i| !table.is_key(i))
            .collect();
        let staged: Vec<StagedRow> = images
            .into_iter()
            .map(|i| staged(Staged::Image(i), None))
            .collect();
        if table.key_unique() {
            self.sql(
                shard,
                SqlOp::Insert {
                    captured: false,
                    upsert: true,
                },
                staged,
            );
            return Ok(());
        }
        // Without a unique key: update rows that have the key, insert the others.
        let group = self.stage(shard, staged);
        if !non_key.is_empty() && !table.key().is_empty() {
            self.plan.steps.push(Step::Sql {
                shard: shard.clone(),
                op: SqlOp::Update {
                    set: non_key,
                    by_old: false,
                },
                group,
                expect: None,
            });
        }
        self.plan.steps.push(Step::Sql {
            shard: shard.clone(),
            op: SqlOp::Insert {
                captured: false,
                upsert: true,
            },
            group,
            expect: None,
        });
        Ok(())
    }

    /// Plans one segment (no truncates inside).
    fn segment(&mut self, changes: &[Change]) -> Result<(), SinkError> {
        if changes.is_empty() {
            return Ok(());
        }
        // Tables whose changes in this segment are not all inserts need compaction.
        let mut mixed: HashSet<usize> = HashSet::new();
        for c in changes {
            if let Change::Update { shard, .. } | Change::Delete { shard, .. } = c {
                mixed.insert(table_id(shard.table()));
            }
        }
        let mut seg = Segment::new(mixed);
        for c in changes {
            if let Change::InsertRows { shard, data, rows } = c {
                if seg.per_row(shard) {
                    for row in split_rows(shard, data, *rows)? {
                        seg.push(&Change::Insert {
                            shard: shard.clone(),
                            row,
                        })?;
                    }
                } else {
                    seg.direct(shard).chunks.push((data.clone(), *rows));
                }
                continue;
            }
            seg.push(c)?;
        }
        let Segment {
            compactor,
            direct,
            runs,
            ..
        } = seg;
        self.net(compactor.finish(self.idempotent), direct)?;
        for runs in runs.into_values() {
            for run in runs.done.into_iter().chain(runs.current) {
                self.run(run)?;
            }
        }
        Ok(())
    }

    /// Plans the net operations of unique-key tables in three phases.
    fn net(&mut self, ops: Vec<NetOp>, direct: Grouped<usize, Inserts>) -> Result<(), SinkError> {
        let mut deletes: Grouped<usize, (Shard, Vec<StagedRow>)> = Grouped::default();
        let mut updates: Grouped<(usize, Vec<usize>), (Shard, Vec<StagedRow>)> = Grouped::default();
        let mut moves: Grouped<MoveKey, (Shard, Shard, Vec<StagedRow>)> = Grouped::default();
        let mut inserts = direct;
        for op in ops {
            match op {
                NetOp::Delete { shard, key } => {
                    self.plan.counts.deleted += 1;
                    deletes
                        .get(shard.id(), || (shard.clone(), Vec::new()))
                        .1
                        .push(staged(Staged::Key(key), None));
                }
                NetOp::Update { shard, image } => {
                    self.plan.counts.updated += 1;
                    let present = image.present();
                    updates
                        .get((shard.id(), present), || (shard.clone(), Vec::new()))
                        .1
                        .push(staged(Staged::Image(image), None));
                }
                NetOp::Insert { shard, image } => {
                    inserts
                        .get(shard.id(), || Inserts::new(&shard))
                        .images
                        .push(image);
                }
                NetOp::Move { from, to, image } => {
                    self.plan.counts.moved += 1;
                    let missing: Vec<usize> = image
                        .columns()
                        .enumerate()
                        .filter(|(_, c)| c.is_unchanged_toast())
                        .map(|(i, _)| i)
                        .collect();
                    moves
                        .get((from.shard.id(), to.id(), missing), || {
                            (from.shard.clone(), to.clone(), Vec::new())
                        })
                        .2
                        .push(staged(Staged::Image(image), Some(from.key)));
                }
            }
        }
        for (shard, rows) in deletes.into_values() {
            self.sql(&shard, SqlOp::Delete { by_old: false }, rows);
        }
        let mut move_groups = Vec::new();
        for ((_, _, missing), (from, to, rows)) in moves.into_entries() {
            let group = self.next_group;
            self.sql(&from, SqlOp::Capture { missing }, rows);
            move_groups.push((to, group));
        }
        for ((_, present), (shard, rows)) in updates.into_entries() {
            let table = shard.table().clone();
            let mut set: Vec<usize> = present.into_iter().filter(|&i| !table.is_key(i)).collect();
            if set.is_empty() {
                // Nothing but the key is known: a no-op write that still proves the row exists.
                set = table.key().to_vec();
            }
            self.sql(&shard, SqlOp::Update { set, by_old: false }, rows);
        }
        for (to, group) in move_groups {
            self.plan.steps.push(Step::Sql {
                shard: to,
                op: SqlOp::Insert {
                    captured: true,
                    upsert: self.idempotent,
                },
                group,
                expect: None,
            });
        }
        for ins in inserts.into_values() {
            self.inserts(ins)?;
        }
        Ok(())
    }

    /// Plans one in-order run of a table without a unique key.
    fn run(&mut self, run: Run) -> Result<(), SinkError> {
        let n = run.rows.len() as u64;
        match run.kind {
            RunKind::Insert => {
                let mut ins = Inserts::new(&run.shard);
                ins.images = run
                    .rows
                    .into_iter()
                    .filter_map(|r| match r.values {
                        Staged::Image(i) => Some(i),
                        Staged::Key(_) => None,
                    })
                    .collect();
                self.inserts(ins)?;
            }
            RunKind::Delete => {
                self.plan.counts.deleted += n;
                self.sql(&run.shard, SqlOp::Delete { by_old: false }, run.rows);
            }
            RunKind::Update(present) => {
                self.plan.counts.updated += n;
                self.sql(
                    &run.shard,
                    SqlOp::Update {
                        set: present,
                        by_old: true,
                    },
                    run.rows,
                );
            }
        }
        Ok(())
    }
}

/// Moves group by (from shard, to shard, columns to capture).
type MoveKey = (usize, usize, Vec<usize>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::CopyTuple;
    use crate::target::ShardTarget;
    use pgwarp_decoder::{ColumnRef, Lsn, TupleData};

    fn shard(unique: bool) -> Shard {
        let t = TargetTable::new(
            "public.t",
            vec!["id".into(), "v".into()],
            if unique { vec![0] } else { vec![0, 1] },
            unique,
        )
        .unwrap();
        Arc::new(ShardTarget::new(Arc::new(t), "public", "t_1"))
    }

    fn row(id: &str, v: &str) -> Row {
        Row::Tuple(
            TupleData::from_values([
                ColumnRef::Text(id.as_bytes()),
                ColumnRef::Text(v.as_bytes()),
            ])
            .unwrap(),
        )
    }

    fn shape(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .map(|s| match s {
                Step::Copy { rows, chunks, .. } => {
                    format!("copy {} + {}", rows.len(), chunks.len())
                }
                Step::Sql {
                    op, group, expect, ..
                } => format!("{op:?} g{group} {expect:?}"),
                Step::Truncate { .. } => "truncate".into(),
            })
            .collect()
    }

    #[test]
    fn phases_and_barriers() {
        let s = shard(true);
        let changes = vec![
            Change::Insert {
                shard: s.clone(),
                row: row("1", "a"),
            },
            Change::Update {
                shard: s.clone(),
                old_key: None,
                new: row("2", "b"),
                moved_from: None,
            },
            Change::Delete {
                shard: s.clone(),
                key: row("3", "c"),
            },
            Change::Truncate {
                shards: vec![s.clone()],
                cascade: false,
                restart_identity: false,
            },
            Change::Insert {
                shard: s.clone(),
                row: row("1", "z"),
            },
        ];
        let plan = build(&NodeBatch::complete(changes.clone(), Lsn(1))).unwrap();
        assert_eq!(
            shape(&plan),
            [
                "Delete { by_old: false } g0 Some(1)",
                "Update { set: [1], by_old: false } g1 Some(1)",
                "copy 1 + 0",
                "truncate",
                "copy 1 + 0"
            ]
        );
        assert_eq!(
            plan.counts,
            Counts {
                inserted: 2,
                updated: 1,
                deleted: 1,
                moved: 0,
                truncates: 1
            }
        );
        assert_eq!(plan.stages.len(), 1);
        assert_eq!(plan.stages[0].rows.len(), 2);
        let plan = build(&NodeBatch::partial(changes, Lsn(1), Lsn(2))).unwrap();
        assert_eq!(
            shape(&plan),
            [
                "Delete { by_old: false } g0 None",
                "Update { set: [1], by_old: false } g1 None",
                "Insert { captured: false, upsert: true } g2 None",
                "truncate",
                "Insert { captured: false, upsert: true } g3 None"
            ]
        );
    }

    #[test]
    fn a_shard_under_two_definitions_is_cut_into_segments() {
        // the same shard table, before and after a column was added at its end
        let narrow = shard(true);
        let wide = Arc::new(ShardTarget::new(
            Arc::new(
                TargetTable::new(
                    "public.t",
                    vec!["id".into(), "v".into(), "w".into()],
                    vec![0],
                    true,
                )
                .unwrap(),
            ),
            "public",
            "t_1",
        ));
        let wide_row = Row::Tuple(
            TupleData::from_values([
                ColumnRef::Text(b"1"),
                ColumnRef::Text(b"b"),
                ColumnRef::Text(b"w"),
            ])
            .unwrap(),
        );
        let changes = vec![
            Change::Insert {
                shard: narrow.clone(),
                row: row("1", "a"),
            },
            Change::Update {
                shard: wide,
                old_key: None,
                new: wide_row,
                moved_from: None,
            },
        ];
        let plan = build(&NodeBatch::complete(changes, Lsn(1))).unwrap();
        // the insert comes first, so the update finds its row
        assert_eq!(
            shape(&plan),
            [
                "copy 1 + 0",
                "Update { set: [1, 2], by_old: false } g0 Some(1)"
            ]
        );
    }

    #[test]
    fn tables_without_unique_key_keep_order() {
        let s = shard(false);
        let changes = vec![
            Change::Insert {
                shard: s.clone(),
                row: row("1", "a"),
            },
            Change::Update {
                shard: s.clone(),
                old_key: Some(row("1", "a")),
                new: row("1", "b"),
                moved_from: None,
            },
            Change::Update {
                shard: s.clone(),
                old_key: Some(row("1", "b")),
                new: row("1", "c"),
                moved_from: None,
            },
            Change::Update {
                shard: s.clone(),
                old_key: Some(row("2", "x")),
                new: row("2", "y"),
                moved_from: None,
            },
            Change::Delete {
                shard: s.clone(),
                key: row("1", "c"),
            },
        ];
        let plan = build(&NodeBatch::complete(changes, Lsn(1))).unwrap();
        assert_eq!(
            shape(&plan),
            [
                "copy 1 + 0",
                "Update { set: [0, 1], by_old: true } g0 Some(1)",
                "Update { set: [0, 1], by_old: true } g1 Some(2)",
                "Delete { by_old: false } g2 Some(1)"
            ]
        );
    }

    #[test]
    fn bulk_rows_are_forwarded_or_split() {
        let s = shard(true);
        let tuple = |id: u8| [&[0, 2, 0, 0, 0, 1, id][..], &[0, 0, 0, 1, b'v']].concat();
        let data = Bytes::from([tuple(1), tuple(2)].concat());
        let bulk = Change::InsertRows {
            shard: s.clone(),
            data: data.clone(),
            rows: 2,
        };
        // Alone: forwarded as one chunk.
        let plan = build(&NodeBatch::complete(vec![bulk.clone()], Lsn(1))).unwrap();
        assert_eq!(shape(&plan), ["copy 0 + 1"]);
        assert_eq!(plan.counts.inserted, 2);
        // Idempotent: split and staged for an upsert.
        let plan = build(&NodeBatch::snapshot_chunk(vec![bulk.clone()])).unwrap();
        assert_eq!(
            shape(&plan),
            ["Insert { captured: false, upsert: true } g0 None"]
        );
        assert_eq!(plan.stages[0].rows.len(), 2);
        // With a delete of one of them in the segment: split and compacted.
        let del = Change::Delete {
            shard: s.clone(),
            key: Row::Copy(CopyTuple::new(Bytes::from(tuple(2))).unwrap()),
        };
        let plan = build(&NodeBatch::complete(vec![bulk, del], Lsn(1))).unwrap();
        assert_eq!(shape(&plan), ["copy 1 + 0"]);
        // A wrong count is an error wherever the rows are split.
        let bad = Change::InsertRows {
            shard: s,
            data,
            rows: 3,
        };
        let err = build(&NodeBatch::snapshot_chunk(vec![bad])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid row for table public.t: bulk data holds 2 rows, 3 announced"
        );
    }

    #[test]
    fn mixed_formats_are_rejected() {
        let s = shard(true);
        let bin = Row::Tuple(
            TupleData::from_values([ColumnRef::Binary(b"\0\0\0\x01"), ColumnRef::Null]).unwrap(),
        );
        let changes = vec![
            Change::Insert {
                shard: s.clone(),
                row: row("1", "a"),
            },
            Change::Insert {
                shard: s.clone(),
                row: bin,
            },
        ];
        assert!(build(&NodeBatch::complete(changes, Lsn(1))).is_err());
    }
}
