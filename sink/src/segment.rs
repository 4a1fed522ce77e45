//! Sorting one segment's changes: bulk and single inserts that can go straight to COPY, rows
//! that need compaction, and tables kept in source order.
//!
//! Snapshot chunks arrive shard by shard, so the segment remembers the last shard and table it
//! looked up: a batch of a million inserts costs a handful of hash lookups, not a million.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::change::Change;
use crate::compact::Compactor;
use crate::error::SinkError;
use crate::image::{Image, KeyVals, check_width};
use crate::plan::{Staged, StagedRow};
use crate::row::{CopyTuple, Row};
use crate::runs::Runs;
use crate::target::{Shard, table_id};

/// Inserts for one shard: single rows and bulk chunks of binary COPY tuples.
#[derive(Debug)]
pub(crate) struct Inserts {
    pub(crate) shard: Shard,
    pub(crate) images: Vec<Image>,
    pub(crate) chunks: Vec<(Bytes, u64)>,
}

impl Inserts {
    pub(crate) fn new(shard: &Shard) -> Inserts {
        Inserts {
            shard: shard.clone(),
            images: Vec::new(),
            chunks: Vec::new(),
        }
    }
}

/// The state of one segment while its changes are sorted out.
#[derive(Default)]
pub(crate) struct Segment {
    pub(crate) mixed: HashSet<usize>,
    pub(crate) compactor: Compactor,
    pub(crate) direct: Grouped<usize, Inserts>,
    pub(crate) runs: Grouped<usize, Runs>,
    /// The last shard routed to `direct` and its entry: snapshot rows come shard by shard.
    last_direct: Option<(usize, usize)>,
    /// The last table checked against `mixed`, and the answer.
    last_table: Option<(usize, bool)>,
}

impl Segment {
    /// A segment in which the tables of `mixed` have updates or deletes.
    pub(crate) fn new(mixed: HashSet<usize>) -> Segment {
        Segment {
            mixed,
            ..Segment::default()
        }
    }

    /// Whether rows of this shard's table must go one by one (compaction or source order).
    pub(crate) fn per_row(&mut self, shard: &Shard) -> bool {
        let table = shard.table();
        if !table.key_unique() {
            return true;
        }
        let id = table_id(table);
        match self.last_table {
            Some((t, mixed)) if t == id => mixed,
            _ => {
                let mixed = self.mixed.contains(&id);
                self.last_table = Some((id, mixed));
                mixed
            }
        }
    }

    pub(crate) fn direct(&mut self, shard: &Shard) -> &mut Inserts {
        let id = shard.id();
        let index = match self.last_direct {
            Some((s, i)) if s == id => i,
            _ => {
                self.direct.get(id, || Inserts::new(shard));
                let i = self.direct.index[&id];
                self.last_direct = Some((id, i));
                i
            }
        };
        &mut self.direct.entries[index].1
    }

    pub(crate) fn push(&mut self, c: &Change) -> Result<(), SinkError> {
        let shard = match c {
            Change::Insert { shard, .. }
            | Change::Update { shard, .. }
            | Change::Delete { shard, .. } => shard,
            Change::InsertRows { .. } | Change::Truncate { .. } => return Ok(()),
        };
        let table = shard.table();
        if !table.key_unique() {
            return self.runs.get(table_id(table), Runs::default).push(c);
        }
        if self.per_row(shard) {
            return self.compactor.push(c);
        }
        if let Change::Insert { row, .. } = c {
            check_width(row, table)?;
            if row.has_unchanged() {
                return Err(SinkError::InvalidRow {
                    table: table.name().to_owned(),
                    reason: "inserted row has an unchanged toast value".into(),
                });
            }
            self.direct(shard).images.push(Image::Row(row.clone()));
        }
        Ok(())
    }
}

/// Splits bulk rows into single rows, checking their framing, width and number.
pub(crate) fn split_rows(shard: &Shard, data: &Bytes, rows: u64) -> Result<Vec<Row>, SinkError> {
    let table = shard.table();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (tuple, next) = CopyTuple::parse_at(data, pos)?.ok_or(SinkError::InvalidCopyData {
            offset: pos,
            reason: "end-of-data marker inside bulk rows",
        })?;
        let row = Row::Copy(tuple);
        check_width(&row, table)?;
        out.push(row);
        pos = next;
    }
    if out.len() as u64 != rows {
        return Err(SinkError::InvalidRow {
            table: table.name().to_owned(),
            reason: format!("bulk data holds {} rows, {rows} announced", out.len()),
        });
    }
    Ok(out)
}

pub(crate) fn staged(values: Staged, old_key: Option<KeyVals>) -> StagedRow {
    StagedRow {
        group: 0,
        values,
        old_key,
    }
}

/// An insertion-ordered map.
pub(crate) struct Grouped<K, V> {
    index: HashMap<K, usize>,
    entries: Vec<(K, V)>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped {
            index: HashMap::new(),
            entries: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Grouped<K, V> {
    pub(crate) fn get(&mut self, key: K, init: impl FnOnce() -> V) -> &mut V {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.entries.push((key.clone(), init()));
                self.index.insert(key, self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    pub(crate) fn into_values(self) -> impl Iterator<Item = V> {
        self.entries.into_iter().map(|(_, v)| v)
    }

    pub(crate) fn into_entries(self) -> impl Iterator<Item = (K, V)> {
        self.entries.into_iter()
    }
}
