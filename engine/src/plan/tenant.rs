//! Rule 1 of [`super::decide`]: the tenant key, and how each table reaches it.
//!
//! Reachability follows foreign keys from the referencing table to the referenced one; a table
//! reaches itself. The tenant key's candidates, scores and tie-breaks are described in
//! [`super::decide`].

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::catalog::{ForeignKey, Snapshot, TableStat};
use super::decide::Tenant;

/// Which tables each table reaches through foreign keys (itself included).
pub(super) fn reach(snap: &Snapshot) -> Vec<HashSet<usize>> {
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); snap.tables.len()];
    for fk in &snap.foreign_keys {
        if let Some(p) = parents.get_mut(fk.table) {
            p.push(fk.ref_table);
        }
    }
    (0..snap.tables.len())
        .map(|start| {
            let mut seen = HashSet::from([start]);
            let mut queue = VecDeque::from([start]);
            while let Some(t) = queue.pop_front() {
                for &p in parents.get(t).map(Vec::as_slice).unwrap_or_default() {
                    if seen.insert(p) {
                        queue.push_back(p);
                    }
                }
            }
            seen
        })
        .collect()
}

fn single(fk: &ForeignKey) -> Option<(&str, &str)> {
    match (fk.columns.as_slice(), fk.ref_columns.as_slice()) {
        ([c], [r]) => Some((c, r)),
        _ => None,
    }
}

/// Picks the tenant key (rule 1).
pub(super) fn choose_tenant(
    snap: &Snapshot,
    large: &[bool],
    reaches: &[HashSet<usize>],
    wanted: Option<&str>,
) -> Option<Tenant> {
    // candidate (table, key) -> referencing column names
    let mut candidates: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    for fk in &snap.foreign_keys {
        if let Some((col, key)) = single(fk)
            && wanted.is_none_or(|w| w == col)
            && fk.table != fk.ref_table
        {
            candidates
                .entry((fk.ref_table, key.to_owned()))
                .or_default()
                .push(col.to_owned());
        }
    }
    if candidates.is_empty()
        && let Some(w) = wanted
    {
        for (i, t) in snap.tables.iter().enumerate() {
            if t.primary_key().is_some_and(|k| k.columns == [w]) {
                candidates.insert((i, w.to_owned()), Vec::new());
            }
        }
    }
    let score = |t: usize| {
        reaches
            .iter()
            .enumerate()
            .filter(|(i, r)| large.get(*i).copied().unwrap_or(false) && r.contains(&t))
            .count()
    };
    let best = candidates.keys().map(|(t, _)| score(*t)).max()?;
    if best == 0 && wanted.is_none() {
        return None;
    }
    let top: Vec<&(usize, String)> = candidates
        .keys()
        .filter(|(t, _)| score(*t) == best)
        .collect();
    // among equals, the key with the most distinct values spreads rows best: a lookup table
    // (countries) is reached by as many tables as the real tenant (users) but has few rows
    let (table, key) = top.into_iter().max_by(|a, b| {
        let rows = |c: &(usize, String)| snap.tables.get(c.0).and_then(|t| t.rows).unwrap_or(0);
        let refs = |c: &(usize, String)| candidates.get(c).map_or(0, Vec::len);
        let bytes = |c: &(usize, String)| snap.tables.get(c.0).map_or(0, |t| t.bytes);
        rows(a)
            .cmp(&rows(b))
            .then(refs(a).cmp(&refs(b)))
            .then(bytes(a).cmp(&bytes(b)))
            // prefer the alphabetically first name: reverse, since max_by takes the last
            .then_with(|| {
                let name = |c: &(usize, String)| snap.tables.get(c.0).map(TableStat::display);
                name(b).cmp(&name(a))
            })
    })?;
    let names = candidates
        .get(&(*table, key.clone()))
        .cloned()
        .unwrap_or_default();
    let column = wanted
        .map(str::to_owned)
        .unwrap_or_else(|| most_common(&names, key));
    let type_name = snap
        .tables
        .get(*table)
        .and_then(|t| t.column(key))
        .map_or_else(|| "bigint".to_owned(), |c| c.type_name.clone());
    Some(Tenant {
        table: Some(*table),
        key: key.clone(),
        column,
        type_name,
    })
}

fn most_common(names: &[String], fallback: &str) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    let mut best: Option<(&str, usize)> = None;
    for (n, c) in counts {
        if best.is_none_or(|(_, b)| c > b) {
            best = Some((n, c));
        }
    }
    best.map_or_else(|| fallback.to_owned(), |(n, _)| n.to_owned())
}

/// The column of table `t` that holds the tenant key, if any.
pub(super) fn tenant_column_of(snap: &Snapshot, tenant: &Tenant, t: usize) -> Option<String> {
    if tenant.table == Some(t) {
        return Some(tenant.key.clone());
    }
    if let Some(root) = tenant.table {
        for fk in snap
            .foreign_keys
            .iter()
            .filter(|f| f.table == t && f.ref_table == root)
        {
            if let Some((col, key)) = single(fk)
                && key == tenant.key
            {
                return Some(col.to_owned());
            }
        }
    }
    let table = snap.tables.get(t)?;
    table.column(&tenant.column).map(|c| c.name.clone())
}

/// The shortest foreign-key path from `start` to a table with the tenant column: (length, the
/// first foreign key on it).
pub(super) fn path_to(snap: &Snapshot, start: usize, has: &[bool]) -> Option<(usize, usize)> {
    let mut seen = HashSet::from([start]);
    let mut queue: VecDeque<(usize, usize, usize)> = VecDeque::new();
    for (f, fk) in snap
        .foreign_keys
        .iter()
        .enumerate()
        .filter(|(_, fk)| fk.table == start)
    {
        queue.push_back((fk.ref_table, 1, f));
    }
    while let Some((t, depth, first)) = queue.pop_front() {
        if !seen.insert(t) {
            continue;
        }
        if has.get(t).copied().unwrap_or(false) {
            return Some((depth, first));
        }
        for fk in snap.foreign_keys.iter().filter(|fk| fk.table == t) {
            queue.push_back((fk.ref_table, depth + 1, first));
        }
    }
    None
}
