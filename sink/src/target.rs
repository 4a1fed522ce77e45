//! What the sink writes into: a table as the source describes it, and one shard of it on a node.
//!
//! The engine's router builds one [`TargetTable`] per source relation (columns by name in the
//! source's order, the replica identity key) and one [`ShardTarget`] per shard table it routes
//! rows to (`"public"."orders_102040"` on a Citus worker, or the table itself on a plain
//! PostgreSQL target). Both are shared behind `Arc`: a change carries a [`Shard`] (one reference
//! count increment). Identity is by value, not by pointer: the engine may build a new
//! `ShardTarget` for the same shard (after a Relation message, say) and changes for it still
//! fold together, because compaction and the writer's caches key on a fingerprint of the
//! description (names, columns, key), computed once at construction.

use crate::quote::quote_ident;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::error::SinkError;

/// A shared [`ShardTarget`], as carried by every change.
pub type Shard = Arc<ShardTarget>;

/// A table as the source describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    name: String,
    columns: Vec<String>,
    key: Vec<usize>,
    key_unique: bool,
    fingerprint: u64,
}

impl TargetTable {
    /// Describes a table.
    ///
    /// * `name`: the logical name for messages, e.g. `public.orders` (not quoted).
    /// * `columns`: column names in the order of the fields of every row given for this table
    ///   (the source relation's columns; generated columns excluded).
    /// * `key`: indexes into `columns` of the replica identity (primary key, replica identity
    ///   index, or every column for `REPLICA IDENTITY FULL`).
    /// * `key_unique`: whether the target has a unique index on exactly the key columns. Net
    ///   effects per key, `ON CONFLICT` upserts and `=` matching need it; without it (`FULL`
    ///   without a unique index) changes are applied in source order and matched with
    ///   `IS NOT DISTINCT FROM`.
    pub fn new(
        name: impl Into<String>,
        columns: Vec<String>,
        key: Vec<usize>,
        key_unique: bool,
    ) -> Result<TargetTable, SinkError> {
        let name = name.into();
        let invalid = |reason: String| SinkError::InvalidTable {
            table: name.clone(),
            reason,
        };
        if columns.is_empty() {
            return Err(invalid("no columns".into()));
        }
        // Staging tables add 2 + key.len() columns; PostgreSQL allows 1600.
        if columns.len() + key.len() + 2 > 1600 {
            return Err(invalid(format!("{} columns is too many", columns.len())));
        }
        for (i, c) in columns.iter().enumerate() {
            if c.is_empty() {
                return Err(invalid(format!("column {i} has an empty name")));
            }
            if c.starts_with("__pgwarp_") {
                return Err(invalid(format!(
                    "column name \"{c}\" uses the prefix reserved for staging columns"
                )));
            }
            if columns[..i].contains(c) {
                return Err(invalid(format!("column \"{c}\" appears twice")));
            }
        }
        for (i, &k) in key.iter().enumerate() {
            if k >= columns.len() {
                return Err(invalid(format!(
                    "key column index {k} is out of range ({} columns)",
                    columns.len()
                )));
            }
            if key[..i].contains(&k) {
                return Err(invalid(format!("key column {k} appears twice")));
            }
        }
        if key_unique && key.is_empty() {
            return Err(invalid("a unique key needs at least one column".into()));
        }
        let mut h = DefaultHasher::new();
        (&name, &columns, &key, key_unique).hash(&mut h);
        Ok(TargetTable {
            name,
            columns,
            key,
            key_unique,
            fingerprint: h.finish(),
        })
    }

    /// Logical name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Column names, in row order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Indexes of the key columns.
    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// Whether the key is backed by a unique index on the target.
    pub fn key_unique(&self) -> bool {
        self.key_unique
    }

    /// Whether column `index` is a key column.
    pub(crate) fn is_key(&self, index: usize) -> bool {
        self.key.contains(&index)
    }
}

/// One shard table of a [`TargetTable`] on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardTarget {
    table: Arc<TargetTable>,
    quoted: String,
    fingerprint: u64,
}

impl ShardTarget {
    /// The shard table `schema.relation`, e.g. (`public`, `orders_102040`); both parts are
    /// quoted here.
    pub fn new(table: Arc<TargetTable>, schema: &str, relation: &str) -> ShardTarget {
        let quoted = format!("{}.{}", quote_ident(schema), quote_ident(relation));
        let mut h = DefaultHasher::new();
        (table.fingerprint, &quoted).hash(&mut h);
        ShardTarget {
            table,
            quoted,
            fingerprint: h.finish(),
        }
    }

    /// The table this is a shard of.
    pub fn table(&self) -> &Arc<TargetTable> {
        &self.table
    }

    /// The quoted qualified name, e.g. `"public"."orders_102040"`.
    pub fn quoted_name(&self) -> &str {
        &self.quoted
    }

    /// Identity of this shard (by value) for the writer's caches and the compaction map.
    pub(crate) fn id(&self) -> usize {
        self.fingerprint as usize
    }
}

impl fmt::Display for ShardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted)
    }
}

/// Identity of a table (by value) for caches keyed by table.
pub(crate) fn table_id(table: &TargetTable) -> usize {
    table.fingerprint as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let t = Arc::new(TargetTable::new("s.t", cols(&["id"]), vec![0], true).unwrap());
        let s = ShardTarget::new(t, "my schema", "t_102008");
        assert_eq!(s.quoted_name(), "\"my schema\".\"t_102008\"");
    }

    #[test]
    fn identity_is_by_value() {
        let make = || {
            let t = TargetTable::new("s.t", cols(&["id", "v"]), vec![0], true).unwrap();
            Arc::new(ShardTarget::new(Arc::new(t), "s", "t_1"))
        };
        let (a, b) = (make(), make());
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a.id(), b.id());
        assert_eq!(table_id(a.table()), table_id(b.table()));
        let other = TargetTable::new("s.t", cols(&["id", "w"]), vec![0], true).unwrap();
        assert_ne!(table_id(a.table()), table_id(&other));
        let c = ShardTarget::new(a.table().clone(), "s", "t_2");
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn rejects_bad_descriptions() {
        let err = |c: &[&str], k: Vec<usize>, u: bool| {
            TargetTable::new("public.t", cols(c), k, u)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[], vec![], false),
            "invalid target table public.t: no columns"
        );
        assert_eq!(
            err(&["a"], vec![1], true),
            "invalid target table public.t: key column index 1 is out of range (1 columns)"
        );
        assert_eq!(
            err(&["a", "a"], vec![0], true),
            "invalid target table public.t: column \"a\" appears twice"
        );
        assert_eq!(
            err(&["a"], vec![], true),
            "invalid target table public.t: a unique key needs at least one column"
        );
        assert!(err(&["__pgwarp_g"], vec![], false).contains("reserved"));
    }
}
