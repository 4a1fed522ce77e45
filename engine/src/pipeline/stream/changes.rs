//! Routing one change of a transaction, and checking a Relation message against the table.
//!
//! An update is routed by its new image's distribution value and, when the source sent an
//! old key (the key changed), by the old one's. Same shard: one update per placement.
//! Different shards: a delete on the old placements and an insert on the new ones, or, where
//! both shards are on the same node and the new image has unchanged TOAST values, a single
//! update with `moved_from` (the sink carries those values over from the old row). Across
//! nodes, unchanged TOAST values can only come from a full old row (`REPLICA IDENTITY FULL`).

use std::sync::Arc;

use pgwarp_decoder::{ColumnRef, Message, OldTuple, Relation, TupleData};
use pgwarp_sink::{Change, Row};

use super::super::catalog::same_set;
use super::super::error::PipelineError;
use super::super::routes::RouteTable;
use super::outbox::Push;

/// The (sub)transaction xid a change message carries inside a stream segment.
pub(super) fn change_xid(m: &Message) -> Option<u32> {
    match m {
        Message::Insert(i) => i.xid,
        Message::Update(u) => u.xid,
        Message::Delete(d) => d.xid,
        Message::Truncate(t) => t.xid,
        _ => None,
    }
}

/// The distribution field of a row, for hash tables.
pub(super) fn dist<'a>(rt: &RouteTable, row: &'a TupleData) -> Option<ColumnRef<'a>> {
    rt.dist_index.and_then(|i| row.get(i))
}

pub(super) fn route_update(
    rt: &RouteTable,
    txn: &mut impl Push,
    old: Option<OldTuple>,
    new: TupleData,
) -> Result<(), PipelineError> {
    let cost = new.wire_bytes().len() + old.as_ref().map_or(0, |o| o.tuple().wire_bytes().len());
    let new_value = dist(rt, &new);
    let old_value = old.as_ref().and_then(|o| dist(rt, o.tuple()));
    // an unchanged TOAST marker in the distribution column means "same as before"
    let new_value = match new_value {
        Some(ColumnRef::UnchangedToast) => old_value.or(new_value),
        v => v,
    };
    let new_places = rt.route(new_value)?;
    let old_places = match old_value {
        Some(v) if rt.dist_index.is_some() => rt.route(Some(v))?,
        _ => new_places,
    };
    let old_row = old.as_ref().map(|o| Row::Tuple(o.tuple().clone()));
    let same_shard = match (old_places.first(), new_places.first()) {
        (Some((_, a)), Some((_, b))) => Arc::ptr_eq(a, b),
        _ => true,
    };
    if same_shard {
        let row = Row::Tuple(new);
        for (node, shard) in new_places {
            let change = Change::Update {
                shard: shard.clone(),
                old_key: old_row.clone(),
                new: row.clone(),
                moved_from: None,
            };
            txn.push(*node, change, cost);
        }
        return Ok(());
    }
    // the row moves to another shard
    let old_row = old_row.ok_or_else(|| {
        PipelineError::Internal(format!(
            "table \"{}\": the distribution value changed without an old key",
            rt.name
        ))
    })?;
    let has_unchanged = new.iter().any(ColumnRef::is_unchanged_toast);
    let complete = if has_unchanged {
        match &old {
            Some(OldTuple::Full(o)) => Some(merge_unchanged(&new, o)?),
            _ => None,
        }
    } else {
        Some(new.clone())
    };
    for (node, shard) in old_places {
        let stays = new_places.iter().any(|(n, _)| n == node);
        if stays && has_unchanged {
            continue; // the moving update above removes it
        }
        let change = Change::Delete {
            shard: shard.clone(),
            key: old_row.clone(),
        };
        txn.push(*node, change, cost);
    }
    for (node, shard) in new_places {
        let from = old_places
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, s)| s.clone());
        match (from, &complete) {
            (Some(from), _) if has_unchanged => {
                let change = Change::Update {
                    shard: shard.clone(),
                    old_key: Some(old_row.clone()),
                    new: Row::Tuple(new.clone()),
                    moved_from: Some(from),
                };
                txn.push(*node, change, cost);
            }
            (_, Some(full)) => {
                let change = Change::Insert {
                    shard: shard.clone(),
                    row: Row::Tuple(full.clone()),
                };
                txn.push(*node, change, cost);
            }
            _ => {
                return Err(PipelineError::Unsupported(format!(
                    "table \"{}\": an update moves a row to a shard on another node, but the \
                     source did not send its unchanged TOAST values; set REPLICA IDENTITY FULL \
                     on the source table so the old row carries them",
                    rt.name
                )));
            }
        }
    }
    Ok(())
}

/// `new` with its unchanged TOAST columns taken from the full old row.
fn merge_unchanged(new: &TupleData, old: &TupleData) -> Result<TupleData, PipelineError> {
    let values = new.iter().zip(old.iter()).map(|(n, o)| match n {
        ColumnRef::UnchangedToast => o,
        v => v,
    });
    TupleData::from_values(values)
        .map_err(|e| PipelineError::Internal(format!("could not rebuild a row: {e}")))
}

/// What differs between the table as described at start and a Relation message.
/// Columns of a Relation message as (name, type) pairs.
fn relation_columns(r: &Relation) -> Vec<(&str, u32)> {
    r.columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_id))
        .collect()
}

fn table_columns(rt: &RouteTable) -> Vec<(&str, u32)> {
    rt.source
        .columns()
        .map(|c| (c.name.as_str(), c.type_oid))
        .collect()
}

fn relation_key(r: &Relation) -> Vec<String> {
    r.columns
        .iter()
        .filter(|c| c.is_key())
        .map(|c| c.name.clone())
        .collect()
}

/// When `r` is an older definition of `rt` (its columns are the first ones of the table's,
/// with the same key), how many columns it has: the definition before an `ADD COLUMN`, seen
/// again when transactions from before it are replayed.
pub(super) fn older_prefix(rt: &RouteTable, r: &Relation) -> Option<usize> {
    let now = table_columns(rt);
    let then = relation_columns(r);
    (then.len() < now.len() && now.starts_with(&then) && same_set(&relation_key(r), &rt.source.key))
        .then_some(then.len())
}

/// When `r` is `rt` plus columns added at the end (same key), their names.
pub(super) fn added_columns(rt: &RouteTable, r: &Relation) -> Option<Vec<String>> {
    let now = table_columns(rt);
    let then = relation_columns(r);
    (then.len() > now.len() && then.starts_with(&now) && same_set(&relation_key(r), &rt.source.key))
        .then(|| {
            then[now.len()..]
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect()
        })
}

/// How `r` differs from the table as described when pgwarp started, in words; `None` when it
/// does not. `older` says that `r` describes the table as it was *before* it was described (a
/// transaction committed earlier, replayed after a restart): then a column only `r` has was
/// dropped since, not added.
pub(super) fn relation_difference(rt: &RouteTable, r: &Relation, older: bool) -> Option<String> {
    let expected: Vec<(&str, u32)> = rt
        .source
        .columns()
        .map(|c| (c.name.as_str(), c.type_oid))
        .collect();
    let got: Vec<(&str, u32)> = r
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_id))
        .collect();
    if expected != got {
        let mut parts = Vec::new();
        for (name, oid) in &got {
            match expected.iter().find(|(n, _)| n == name) {
                None if older => parts.push(format!(
                    "column \"{name}\" was dropped on the source after this change was made and \
                     before pgwarp started; changes made under the old definition cannot be \
                     replayed: start the sync of this table over (pgwarp cleanup, then pgwarp sync)"
                )),
                None => parts.push(format!("column \"{name}\" was added")),
                Some((_, o)) if o != oid => {
                    parts.push(format!("column \"{name}\" changed type (oid {o} to {oid})"))
                }
                Some(_) => {}
            }
        }
        for (name, _) in &expected {
            if !got.iter().any(|(n, _)| n == name) {
                parts.push(format!("column \"{name}\" was dropped"));
            }
        }
        if parts.is_empty() {
            parts.push("columns were reordered".to_owned());
        }
        return Some(parts.join(", "));
    }
    let key: Vec<String> = r
        .columns
        .iter()
        .filter(|c| c.is_key())
        .map(|c| c.name.clone())
        .collect();
    if !same_set(&key, &rt.source.key) {
        return Some(format!(
            "the replica identity changed from ({}) to ({})",
            rt.source.key.join(", "),
            key.join(", ")
        ));
    }
    None
}
