//! Net effect per row: compaction of a batch segment for tables with a unique key.
//!
//! The compactor follows each *row* (not each key value) through the segment. A row either
//! existed before the batch (its first change is an update or a delete, so the source had it)
//! or is new (its first change is an insert). Keys may change along the way, and a row may move
//! to another shard of the node. At the end each row yields at most two net operations:
//!
//! | before the batch | after the batch            | net operations                          |
//! |------------------|----------------------------|-----------------------------------------|
//! | absent           | present at key k           | insert (the latest image)               |
//! | absent           | absent                     | nothing (idempotent: delete-if-present) |
//! | present at k0    | absent                     | delete k0                               |
//! | present at k0    | present at k0, same shard  | update k0 (present columns only)        |
//! | present at k0    | present at k ≠ k0 or moved | delete k0 + insert (complete image)     |
//! |                  |                            | or, with unchanged TOAST columns, a     |
//! |                  |                            | move: delete k0 capturing those columns, |
//! |                  |                            | then insert                             |
//!
//! So insert+update becomes an insert of the new image, insert+delete nothing, update+delete a
//! delete, and delete+insert a delete plus an insert (two rows in this model: the deleted one
//! and the new one), which replaces the row.
//!
//! **Why deletes, then updates, then inserts is a correct order.** Within a segment every net
//! operation of one row touches keys no other row's operation touches at the same phase:
//! deletes remove pre-batch rows (distinct by key), updates rewrite pre-batch rows in place at
//! their unchanged key, and inserts add rows at the keys they hold at the end of the segment,
//! which are distinct because the source's unique index held at its commit. A key that an insert
//! takes was either free before the batch or held by a pre-batch row that was deleted or moved
//! away, and both happen in the delete phase, before any insert. So no phase sees a transient
//! duplicate, and each row ends in the state of its last change. Tables are independent of each
//! other here: the writer runs with `session_replication_role = replica` (as PostgreSQL's own
//! apply worker does), so foreign keys and triggers, already enforced and fired on the source,
//! do not depend on the order across tables. A `TRUNCATE` ends the segment (a barrier).

use std::collections::{HashMap, HashSet};

use crate::change::Change;
use crate::error::SinkError;
use crate::image::{Image, KeyVals, check_width, key_bytes, key_of};
use crate::row::Row;
use crate::target::Shard;

/// Where a row is: shard and key.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub(crate) shard: Shard,
    pub(crate) key: KeyVals,
}

/// One net operation.
#[derive(Debug, Clone)]
pub(crate) enum NetOp {
    /// Insert a complete image.
    Insert { shard: Shard, image: Image },
    /// Update a row in place (same shard, same key); unchanged columns are left alone.
    Update { shard: Shard, image: Image },
    /// Delete the row with this key.
    Delete { shard: Shard, key: KeyVals },
    /// Delete the row at `from` and insert `image` into `to`, taking the image's unchanged
    /// columns from the deleted row.
    Move { from: Loc, to: Shard, image: Image },
}

#[derive(Debug)]
struct Entity {
    origin: Option<Loc>,
    current: Option<Loc>,
    image: Option<Image>,
    /// Every place the row held during the batch and left (by a key change, a move or a
    /// delete), in order; the origin is not repeated here.
    left: Vec<Loc>,
}

/// Folds changes of unique-key tables into net operations.
#[derive(Default)]
pub(crate) struct Compactor {
    entities: Vec<Entity>,
    index: HashMap<Box<[u8]>, usize>,
    scratch: Vec<u8>,
}

impl Compactor {
    fn take(&mut self, shard: &Shard, key: &KeyVals) -> usize {
        fill(&mut self.scratch, shard, key);
        match self.index.remove(self.scratch.as_slice()) {
            Some(i) => {
                if let Some(e) = self.entities.get_mut(i)
                    && let Some(at) = e.current.take()
                    && e.origin.as_ref().is_none_or(|o| !same_place(o, &at))
                {
                    e.left.push(at);
                }
                i
            }
            None => {
                self.entities.push(Entity {
                    origin: Some(Loc {
                        shard: shard.clone(),
                        key: key.clone(),
                    }),
                    current: None,
                    image: None,
                    left: Vec::new(),
                });
                self.entities.len() - 1
            }
        }
    }

    fn place(&mut self, i: usize, loc: Loc) -> Result<(), SinkError> {
        fill(&mut self.scratch, &loc.shard, &loc.key);
        let slot: Box<[u8]> = self.scratch.as_slice().into();
        let table = loc.shard.table().name().to_owned();
        if self.index.insert(slot, i).is_some() {
            return Err(SinkError::InvalidRow {
                table,
                reason: "change puts a row on a key that another row holds in the same batch"
                    .into(),
            });
        }
        if let Some(e) = self.entities.get_mut(i) {
            e.current = Some(loc);
        }
        Ok(())
    }

    /// Folds one insert, update or delete in.
    pub(crate) fn push(&mut self, change: &Change) -> Result<(), SinkError> {
        match change {
            Change::Insert { shard, row } => {
                let table = shard.table();
                check_width(row, table)?;
                if row.has_unchanged() {
                    return Err(SinkError::InvalidRow {
                        table: table.name().to_owned(),
                        reason: "inserted row has an unchanged toast value".into(),
                    });
                }
                let key = key_of(row, table)?;
                fill(&mut self.scratch, shard, &key);
                if let Some(&i) = self.index.get(self.scratch.as_slice()) {
                    // A second insert of a live key: keep the newer image (an upsert).
                    if let Some(e) = self.entities.get_mut(i) {
                        e.image = Some(Image::Row(row.clone()));
                    }
                    return Ok(());
                }
                self.entities.push(Entity {
                    origin: None,
                    current: None,
                    image: Some(Image::Row(row.clone())),
                    left: Vec::new(),
                });
                let i = self.entities.len() - 1;
                self.place(
                    i,
                    Loc {
                        shard: shard.clone(),
                        key,
                    },
                )
            }
            Change::Update {
                shard,
                old_key,
                new,
                moved_from,
            } => {
                let table = shard.table();
                check_width(new, table)?;
                let from = moved_from.as_ref().unwrap_or(shard);
                if from.table() != table {
                    return Err(SinkError::InvalidRow {
                        table: table.name().to_owned(),
                        reason: "update moves a row between shards of different tables".into(),
                    });
                }
                let old = match old_key {
                    Some(k) => {
                        check_width(k, table)?;
                        key_of(k, table)?
                    }
                    None => key_of(new, table)?,
                };
                let new_key = new_key(new, table, &old);
                let i = self.take(from, &old);
                let prev = self.entities.get_mut(i).and_then(|e| e.image.take());
                let image = Image::merge(prev, new).with_key(table, &new_key);
                if let Some(e) = self.entities.get_mut(i) {
                    e.image = Some(image);
                }
                self.place(
                    i,
                    Loc {
                        shard: shard.clone(),
                        key: new_key,
                    },
                )
            }
            Change::Delete { shard, key } => {
                let table = shard.table();
                check_width(key, table)?;
                let key = key_of(key, table)?;
                self.take(shard, &key);
                Ok(())
            }
            // Bulk rows are split into inserts by the planner; truncates end segments.
            Change::InsertRows { .. } | Change::Truncate { .. } => Ok(()),
        }
    }

    /// The net operations, in the order the rows first appeared.
    ///
    /// In idempotent mode the target may hold any key in a *later* state than the batch's
    /// start (see the resume argument in the engine's snapshot module), so the net effect must
    /// match applying the changes one by one from any such state: every place a row left
    /// during the batch is also deleted if present (unless another row holds it at the end),
    /// and a move also updates its destination in place, in case the target already holds
    /// the row there and no longer at its origin.
    pub(crate) fn finish(self, idempotent: bool) -> Vec<NetOp> {
        let mut ops = Vec::with_capacity(self.entities.len());
        let mut scratch = Vec::new();
        let mut left_deleted: HashSet<Box<[u8]>> = HashSet::new();
        for e in self.entities {
            if idempotent {
                for at in e.left {
                    fill(&mut scratch, &at.shard, &at.key);
                    if !self.index.contains_key(scratch.as_slice())
                        && left_deleted.insert(scratch.as_slice().into())
                    {
                        ops.push(NetOp::Delete {
                            shard: at.shard,
                            key: at.key,
                        });
                    }
                }
            }
            match (e.origin, e.current, e.image) {
                (None, Some(c), Some(image)) => ops.push(NetOp::Insert {
                    shard: c.shard,
                    image,
                }),
                // inserted and deleted again: in idempotent mode its places were deleted above
                (None, None, _) => {}
                (Some(o), None, _) => ops.push(NetOp::Delete {
                    shard: o.shard,
                    key: o.key,
                }),
                (Some(o), Some(c), Some(image)) => {
                    if o.shard.id() == c.shard.id() && o.key == c.key {
                        ops.push(NetOp::Update {
                            shard: c.shard,
                            image,
                        });
                    } else if image.has_unchanged() {
                        if idempotent {
                            ops.push(NetOp::Update {
                                shard: c.shard.clone(),
                                image: image.clone(),
                            });
                        }
                        ops.push(NetOp::Move {
                            from: o,
                            to: c.shard,
                            image,
                        });
                    } else {
                        ops.push(NetOp::Delete {
                            shard: o.shard,
                            key: o.key,
                        });
                        ops.push(NetOp::Insert {
                            shard: c.shard,
                            image,
                        });
                    }
                }
                // A live row always has an image.
                (_, Some(_), None) => {}
            }
        }
        ops
    }
}

/// The compaction map key of a row: shard identity, then the key values.
fn fill(scratch: &mut Vec<u8>, shard: &Shard, key: &KeyVals) {
    scratch.clear();
    scratch.extend_from_slice(&shard.id().to_le_bytes());
    key_bytes(scratch, key);
}

/// Whether two places are the same shard and key.
fn same_place(a: &Loc, b: &Loc) -> bool {
    a.shard.id() == b.shard.id() && a.key == b.key
}

/// The key after an update: the new image's key columns, with unchanged ones from the old key.
fn new_key(new: &Row, table: &crate::target::TargetTable, old: &KeyVals) -> KeyVals {
    let mut key = old.clone();
    for (i, c) in new.columns().enumerate() {
        if let Some(j) = table.key().iter().position(|&k| k == i)
            && !c.is_unchanged_toast()
            && let Some(slot) = key.get_mut(j)
        {
            *slot = new.own(c);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{ShardTarget, TargetTable};
    use pgwarp_decoder::{ColumnRef, TupleData};
    use std::sync::Arc;

    fn shard(name: &str) -> Shard {
        let t = Arc::new(
            TargetTable::new(
                "public.t",
                vec!["id".into(), "v".into(), "big".into()],
                vec![0],
                true,
            )
            .unwrap(),
        );
        Arc::new(ShardTarget::new(t, "public", name))
    }

    fn row(id: &str, v: &str, big: Option<&str>) -> Row {
        let big = match big {
            Some(b) => ColumnRef::Text(b.as_bytes()),
            None => ColumnRef::UnchangedToast,
        };
        Row::Tuple(
            TupleData::from_values([
                ColumnRef::Text(id.as_bytes()),
                ColumnRef::Text(v.as_bytes()),
                big,
            ])
            .unwrap(),
        )
    }

    fn key(id: &str) -> Row {
        Row::Tuple(
            TupleData::from_values([
                ColumnRef::Text(id.as_bytes()),
                ColumnRef::Null,
                ColumnRef::Null,
            ])
            .unwrap(),
        )
    }

    fn ins(s: &Shard, r: Row) -> Change {
        Change::Insert {
            shard: s.clone(),
            row: r,
        }
    }
    fn upd(s: &Shard, old: Option<Row>, new: Row) -> Change {
        Change::Update {
            shard: s.clone(),
            old_key: old,
            new,
            moved_from: None,
        }
    }
    fn del(s: &Shard, id: &str) -> Change {
        Change::Delete {
            shard: s.clone(),
            key: key(id),
        }
    }

    /// Renders net operations compactly: `I1(a,b,c)`, `U1(a,b,~)`, `D1`, `M1>2(a,b,~)`.
    fn render(ops: &[NetOp]) -> Vec<String> {
        let img = |i: &Image| {
            i.columns()
                .map(|c| match c {
                    ColumnRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
                    ColumnRef::UnchangedToast => "~".into(),
                    _ => "null".into(),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let k = |k: &KeyVals| match &k[0] {
            pgwarp_decoder::ColumnValue::Text(b) => String::from_utf8_lossy(b).into_owned(),
            _ => "?".into(),
        };
        ops.iter()
            .map(|op| match op {
                NetOp::Insert { image, .. } => format!("I({})", img(image)),
                NetOp::Update { image, .. } => format!("U({})", img(image)),
                NetOp::Delete { key, .. } => format!("D{}", k(key)),
                NetOp::Move { from, image, .. } => format!("M{}({})", k(&from.key), img(image)),
            })
            .collect()
    }

    fn run(changes: &[Change], idempotent: bool) -> Vec<String> {
        let mut c = Compactor::default();
        for ch in changes {
            c.push(ch).unwrap();
        }
        render(&c.finish(idempotent))
    }

    #[test]
    fn compaction_rules() {
        let s = shard("t_1");
        // insert + update -> insert of the new image (unchanged column from the insert)
        assert_eq!(
            run(
                &[
                    ins(&s, row("1", "a", Some("B"))),
                    upd(&s, None, row("1", "b", None))
                ],
                false
            ),
            ["I(1,b,B)"]
        );
        // insert + delete -> nothing, or delete-if-present when idempotent
        assert_eq!(
            run(&[ins(&s, row("1", "a", Some("B"))), del(&s, "1")], false),
            Vec::<String>::new()
        );
        assert_eq!(
            run(&[ins(&s, row("1", "a", Some("B"))), del(&s, "1")], true),
            ["D1"]
        );
        // update + delete -> delete
        assert_eq!(
            run(&[upd(&s, None, row("1", "x", None)), del(&s, "1")], false),
            ["D1"]
        );
        // delete + insert -> replace
        assert_eq!(
            run(&[del(&s, "1"), ins(&s, row("1", "n", Some("N")))], false),
            ["D1", "I(1,n,N)"]
        );
        // update + update -> one update, unchanged column still unchanged
        assert_eq!(
            run(
                &[
                    upd(&s, None, row("1", "x", None)),
                    upd(&s, None, row("1", "y", None))
                ],
                false
            ),
            ["U(1,y,~)"]
        );
        // key change with a complete image -> delete old + insert new
        assert_eq!(
            run(&[upd(&s, Some(key("1")), row("2", "x", Some("B")))], false),
            ["D1", "I(2,x,B)"]
        );
        // key change with an unchanged column -> move
        assert_eq!(
            run(&[upd(&s, Some(key("1")), row("2", "x", None))], false),
            ["M1(2,x,~)"]
        );
        // chain of key changes back to the start -> update in place
        assert_eq!(
            run(
                &[
                    upd(&s, Some(key("1")), row("2", "x", None)),
                    upd(&s, Some(key("2")), row("1", "y", None))
                ],
                false
            ),
            ["U(1,y,~)"]
        );
        // swap through a temporary key
        assert_eq!(
            run(
                &[
                    upd(&s, Some(key("1")), row("9", "a", Some("A"))),
                    upd(&s, Some(key("2")), row("1", "b", Some("B"))),
                    upd(&s, Some(key("9")), row("2", "a", Some("A"))),
                ],
                false
            ),
            ["D1", "I(2,a,A)", "D2", "I(1,b,B)"]
        );
    }

    /// Replaying over a target that may hold keys in a later state: every place a row left is
    /// deleted if present (the resume bug of session 1: a row moved to a new key and then deleted
    /// survived on the target, copied there by the resumed snapshot in its moved state).
    #[test]
    fn idempotent_batches_delete_every_place_a_row_left() {
        let s = shard("t_1");
        let moved_then_deleted = [
            upd(&s, Some(key("1")), row("2", "x", Some("B"))),
            del(&s, "2"),
        ];
        assert_eq!(run(&moved_then_deleted, false), ["D1"]);
        assert_eq!(run(&moved_then_deleted, true), ["D2", "D1"]);
        let inserted_then_moved = [
            ins(&s, row("1", "a", Some("A"))),
            upd(&s, Some(key("1")), row("2", "a", Some("A"))),
        ];
        assert_eq!(run(&inserted_then_moved, false), ["I(2,a,A)"]);
        assert_eq!(run(&inserted_then_moved, true), ["D1", "I(2,a,A)"]);
        let chain = [
            upd(&s, Some(key("1")), row("2", "x", Some("B"))),
            upd(&s, Some(key("2")), row("3", "y", Some("B"))),
        ];
        assert_eq!(run(&chain, false), ["D1", "I(3,y,B)"]);
        assert_eq!(run(&chain, true), ["D2", "D1", "I(3,y,B)"]);
        // a place another row holds at the end is not deleted
        let swap = [
            upd(&s, Some(key("1")), row("9", "a", Some("A"))),
            upd(&s, Some(key("2")), row("1", "b", Some("B"))),
            upd(&s, Some(key("9")), row("2", "a", Some("A"))),
        ];
        assert_eq!(run(&swap, true), ["D9", "D1", "I(2,a,A)", "D2", "I(1,b,B)"]);
        // back to where it started: an update in place, the detour deleted
        let round_trip = [
            upd(&s, Some(key("1")), row("2", "x", None)),
            upd(&s, Some(key("2")), row("1", "y", None)),
        ];
        assert_eq!(run(&round_trip, true), ["D2", "U(1,y,~)"]);
        // a move keeping unchanged columns also updates the destination in place, for a target
        // that already holds the row there
        let mv = [upd(&s, Some(key("1")), row("2", "x", None))];
        assert_eq!(run(&mv, false), ["M1(2,x,~)"]);
        assert_eq!(run(&mv, true), ["U(2,x,~)", "M1(2,x,~)"]);
    }

    #[test]
    fn moves_between_shards() {
        let a = shard("t_1");
        let b = Arc::new(ShardTarget::new(a.table().clone(), "public", "t_2"));
        let mv = Change::Update {
            shard: b.clone(),
            old_key: None,
            new: row("1", "x", None),
            moved_from: Some(a.clone()),
        };
        let mut c = Compactor::default();
        c.push(&mv).unwrap();
        let ops = c.finish(false);
        let NetOp::Move { from, to, .. } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!(from.shard.quoted_name(), "\"public\".\"t_1\"");
        assert_eq!(to.quoted_name(), "\"public\".\"t_2\"");
        // Same key on two shards: two rows.
        assert_eq!(
            run(
                &[
                    ins(&a, row("1", "a", Some("A"))),
                    ins(&b, row("1", "b", Some("B")))
                ],
                false
            ),
            ["I(1,a,A)", "I(1,b,B)"]
        );
    }

    #[test]
    fn a_rebuilt_shard_description_is_the_same_shard() {
        // The engine may build a new ShardTarget after a Relation message.
        let (a, b) = (shard("t_1"), shard("t_1"));
        assert_eq!(
            run(
                &[
                    ins(&a, row("1", "a", Some("A"))),
                    upd(&b, None, row("1", "b", None))
                ],
                false
            ),
            ["I(1,b,A)"]
        );
    }

    #[test]
    fn rejects_inconsistent_changes() {
        let s = shard("t_1");
        let mut c = Compactor::default();
        assert!(c.push(&ins(&s, row("1", "a", None))).is_err());
        c.push(&ins(&s, row("1", "a", Some("A")))).unwrap();
        c.push(&ins(&s, row("2", "a", Some("A")))).unwrap();
        assert!(
            c.push(&upd(&s, Some(key("1")), row("2", "b", Some("B"))))
                .is_err()
        );
    }
}
