//! Errors of the Citus topology loader, router and watch.
//!
//! Everything is *definite* (the operator must fix the cluster or the table list) except failed
//! catalog queries, which are classified by SQLSTATE in [`crate::error::classify_pg`] (a lost
//! connection is transient). Messages name the table, column and shard involved, never a row
//! value.

use crate::citus::names::NameTooLong;
use crate::citus::partkey::PartKeyError;
use crate::citus::router::{RangeError, RouteError};
use crate::error::{Classify, ErrorClass, classify_pg};

/// An error of the `citus` module.
#[derive(Debug, thiserror::Error)]
pub enum CitusError {
    /// A catalog query failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being read.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A catalog query returned something unexpected (a NULL where none can be, a bad type).
    #[error("unexpected catalog contents: {0}")]
    Catalog(String),
    /// The table list names a relation the target does not have.
    #[error("relation \"{0}\" does not exist on the target")]
    TableNotFound(String),
    /// The relation is not a table.
    #[error("relation \"{table}\" is not a table (relkind '{relkind}')")]
    NotATable {
        /// Qualified table name.
        table: String,
        /// `pg_class.relkind`.
        relkind: String,
    },
    /// Append- or range-distributed (legacy) or an unknown partition method.
    #[error(
        "table \"{table}\" uses partition method '{method}', which pgwarp does not support (only hash, reference, single-shard, schema-based and Citus local tables)"
    )]
    UnsupportedMethod {
        /// Qualified table name.
        table: String,
        /// `pg_dist_partition.partmethod`.
        method: String,
    },
    /// The distribution key cannot be parsed.
    #[error("table \"{table}\": {source}")]
    PartKey {
        /// Qualified table name.
        table: String,
        /// Why.
        #[source]
        source: PartKeyError,
    },
    /// The distribution column is missing, dropped, or disagrees with the partition key.
    #[error("table \"{table}\": distribution column (attnum {attnum}) {reason}")]
    DistColumn {
        /// Qualified table name.
        table: String,
        /// `varattno`.
        attnum: i16,
        /// What is wrong.
        reason: String,
    },
    /// Citus forbids non-deterministic collations on distribution columns; pgwarp cannot hash
    /// them either.
    #[error(
        "table \"{table}\": distribution column \"{column}\" uses non-deterministic collation {collation}"
    )]
    NonDeterministicCollation {
        /// Qualified table name.
        table: String,
        /// Column name.
        column: String,
        /// Collation OID.
        collation: u32,
    },
    /// The distribution column's type has no (implemented) hash function.
    #[error(
        "table \"{table}\": cannot hash distribution column \"{column}\" of type {type_name}: {reason}"
    )]
    UnsupportedType {
        /// Qualified table name.
        table: String,
        /// Column name.
        column: String,
        /// `format_type` of the column type.
        type_name: String,
        /// Why.
        reason: String,
    },
    /// The shard metadata violates Citus's invariants.
    #[error("table \"{table}\": {reason}")]
    BadShards {
        /// Qualified table name.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// The shard ranges do not cover the hash space exactly once.
    #[error("table \"{table}\": {source}")]
    BadRanges {
        /// Qualified table name.
        table: String,
        /// Why.
        #[source]
        source: RangeError,
    },
    /// A placement's group has no primary node in cluster 'default'.
    #[error(
        "shard {shard_id} of table \"{table}\" is placed in node group {group_id}, which has no primary node"
    )]
    NoPrimaryNode {
        /// Qualified table name.
        table: String,
        /// Shard id.
        shard_id: i64,
        /// `pg_dist_placement.groupid`.
        group_id: i32,
    },
    /// A hash, single-shard or local table has a placement on an inactive node.
    #[error("shard {shard_id} of table \"{table}\" is placed on inactive node {node}")]
    InactiveNode {
        /// Qualified table name.
        table: String,
        /// Shard id.
        shard_id: i64,
        /// `host:port`.
        node: String,
    },
    /// A shard name cannot be formed.
    #[error(transparent)]
    NameTooLong(#[from] NameTooLong),
    /// A value could not be routed.
    #[error("table \"{table}\", column \"{column}\": {source}")]
    Route {
        /// Qualified table name.
        table: String,
        /// Distribution column name.
        column: String,
        /// Why.
        #[source]
        source: RouteError,
    },
    /// The topology changed in a way the caller must handle by reloading (e.g. a shard moved).
    #[error("Citus topology changed: {0}")]
    Changed(String),
}

impl CitusError {
    pub(crate) fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CitusError {
        move |source| CitusError::Query { what, source }
    }
}

impl Classify for CitusError {
    fn class(&self) -> ErrorClass {
        match self {
            CitusError::Query { source, .. } => classify_pg(source),
            _ => ErrorClass::Definite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_errors_are_definite() {
        assert_eq!(
            CitusError::TableNotFound("t".into()).class(),
            ErrorClass::Definite
        );
        let route = CitusError::Route {
            table: "public.t".into(),
            column: "id".into(),
            source: RouteError::NullValue,
        };
        assert_eq!(route.class(), ErrorClass::Definite);
        assert_eq!(
            route.to_string(),
            "table \"public.t\", column \"id\": the distribution column value cannot be NULL"
        );
    }
}
