//! Tables without a unique key (`REPLICA IDENTITY FULL` and no unique index), kept in source
//! order.
//!
//! Without a key that names one row, changes cannot be folded into a net effect per row, so
//! they are applied in the order the source made them. Consecutive changes of one kind on one
//! shard form a *run* and go out as one set-based statement, as long as no two of them touch
//! the same row image (a second update of a row must see the first one's result, which a single
//! statement would not). Matching uses `IS NOT DISTINCT FROM`, so NULLs in the old row match.

use std::collections::HashSet;

use crate::change::Change;
use crate::error::SinkError;
use crate::image::{Image, KeyVals, check_width, key_bytes, key_of};
use crate::plan::{Staged, StagedRow};
use crate::row::Row;
use crate::segment::staged;
use crate::target::{Shard, TargetTable};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunKind {
    Insert,
    Delete,
    Update(Vec<usize>),
}

pub(crate) struct Run {
    pub(crate) shard: Shard,
    pub(crate) kind: RunKind,
    pub(crate) rows: Vec<StagedRow>,
    keys: HashSet<Vec<u8>>,
}

/// In-order runs of one table without a unique key.
#[derive(Default)]
pub(crate) struct Runs {
    pub(crate) done: Vec<Run>,
    pub(crate) current: Option<Run>,
}

impl Runs {
    pub(crate) fn push(&mut self, change: &Change) -> Result<(), SinkError> {
        let (shard, kind, row, old, touched) = match change {
            Change::Insert { shard, row } => {
                check_width(row, shard.table())?;
                if row.has_unchanged() {
                    return Err(SinkError::InvalidRow {
                        table: shard.table().name().to_owned(),
                        reason: "inserted row has an unchanged toast value".into(),
                    });
                }
                (
                    shard,
                    RunKind::Insert,
                    Staged::Image(Image::Row(row.clone())),
                    None,
                    vec![],
                )
            }
            Change::Delete { shard, key } => {
                check_width(key, shard.table())?;
                let k = need_key(shard.table(), key)?;
                let mut kb = Vec::new();
                key_bytes(&mut kb, &k);
                (shard, RunKind::Delete, Staged::Key(k), None, vec![kb])
            }
            Change::Update {
                shard,
                old_key,
                new,
                moved_from,
            } => {
                let table = shard.table();
                check_width(new, table)?;
                if moved_from.is_some() {
                    return Err(SinkError::InvalidRow {
                        table: table.name().to_owned(),
                        reason: "a table without a unique key cannot move rows between shards \
                                 in one update; send a delete and an insert"
                            .into(),
                    });
                }
                let old = match old_key {
                    Some(k) => {
                        check_width(k, table)?;
                        need_key(table, k)?
                    }
                    None => need_key(table, new)?,
                };
                let image = Image::Row(new.clone());
                let present = image.present();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                key_bytes(&mut a, &old);
                let new_vals: Vec<_> = image.values().collect();
                let new_key: KeyVals = table
                    .key()
                    .iter()
                    .filter_map(|&k| new_vals.get(k).cloned())
                    .collect();
                key_bytes(&mut b, &new_key);
                (
                    shard,
                    RunKind::Update(present),
                    Staged::Image(image),
                    Some(old),
                    vec![a, b],
                )
            }
            Change::InsertRows { .. } | Change::Truncate { .. } => return Ok(()),
        };
        let fits = self.current.as_ref().is_some_and(|r| {
            r.shard.id() == shard.id()
                && r.kind == kind
                && (kind != RunKind::Insert && touched.iter().all(|k| !r.keys.contains(k))
                    || kind == RunKind::Insert)
        });
        if !fits {
            self.done.extend(self.current.take());
            self.current = Some(Run {
                shard: shard.clone(),
                kind,
                rows: Vec::new(),
                keys: HashSet::new(),
            });
        }
        if let Some(run) = self.current.as_mut() {
            run.keys.extend(touched);
            run.rows.push(staged(row, old));
        }
        Ok(())
    }
}

fn need_key(table: &TargetTable, row: &Row) -> Result<KeyVals, SinkError> {
    if table.key().is_empty() {
        return Err(SinkError::InvalidRow {
            table: table.name().to_owned(),
            reason: "update or delete for a table without a replica identity".into(),
        });
    }
    key_of(row, table)
}
