//! The target's topology: which tables exist, how each is distributed, its shards in routing
//! order and the node(s) each shard lives on (ROUTING.md §1).
//!
//! [`Topology::load`] reads it from a Citus coordinator (or a metadata-synced worker), or from
//! a plain PostgreSQL, which is modelled as one node whose only "shard" of each table is the
//! table itself, so everything downstream works unchanged. The result is immutable; a changed
//! cluster is detected by [`crate::citus::TopologyWatch`] and answered by loading a new one.
//!
//! ```text
//!  Topology ─┬─ nodes: [Node]                          (index = NodeIndex)
//!            └─ tables: [CitusTable] ─┬─ router: TableRouter   (value -> ShardIndex)
//!                                     └─ shards: [Shard] ─── placements: [NodeIndex]
//! ```

use std::fmt;

use serde::Serialize;

use crate::citus::error::CitusError;
use crate::citus::names::quote_qualified;
use crate::citus::router::{RouteError, ShardIndex, TableRouter};

mod build;
pub(crate) mod load;
mod types;

pub use load::TargetAddr;

/// Index of a node in [`Topology::nodes`].
pub type NodeIndex = usize;

/// A node rows are written to: a `pg_dist_node` primary, or the target itself for a plain
/// PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Node {
    /// `pg_dist_node.nodeid` (0 for the target of a plain PostgreSQL, or a coordinator that is
    /// not in `pg_dist_node`).
    pub node_id: i32,
    /// `pg_dist_node.groupid` (0 = coordinator).
    pub group_id: i32,
    /// `nodename` as Citus stores it (the name Citus itself connects to).
    pub host: String,
    /// `nodeport`.
    pub port: u16,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How a table is distributed (ROUTING.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// `partmethod 'h'`: rows are routed by the hash of the distribution column.
    Hash,
    /// `partmethod 'n'`, `repmodel 't'`: one shard, every row to every placement.
    Reference,
    /// `partmethod 'n'`, colocated, not in a tenant schema: one shard on one node.
    SingleShard,
    /// A table of a schema-based-sharding tenant schema (`pg_dist_schema`): one shard.
    Tenant,
    /// `partmethod 'n'`, colocation 0: one shard on the coordinator.
    CitusLocal,
    /// Not a Citus table: the table itself, on the target node.
    Plain,
}

impl TableKind {
    /// Lowercase name for messages: `hash-distributed`, `reference`, `single-shard`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Hash => "hash-distributed",
            TableKind::Reference => "reference",
            TableKind::SingleShard => "single-shard",
            TableKind::Tenant => "schema-based tenant",
            TableKind::CitusLocal => "Citus local",
            TableKind::Plain => "plain",
        }
    }
}

/// The distribution column of a hash table, as the coordinator has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistColumn {
    /// Column name (address columns by name: shard attnums can differ).
    pub name: String,
    /// `attnum` in the coordinator's table.
    pub attnum: i16,
    /// Column type OID (`vartype`).
    pub type_oid: u32,
    /// `format_type(type, typmod)`, e.g. `numeric(10,2)`.
    pub type_name: String,
    /// Type OID after resolving domains.
    pub base_type_oid: u32,
    /// Column typmod.
    pub typmod: i32,
    /// Column collation OID (deterministic, checked at load).
    pub collation: u32,
}

/// One shard of a table and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// `pg_dist_shard.shardid`; 0 for a plain table.
    pub shard_id: i64,
    /// Inclusive hash range, for hash tables.
    pub range: Option<(i32, i32)>,
    /// The shard table's relation name (`<relname>_<shardid>`, or the table's own name).
    pub rel_name: String,
    /// `"schema"."rel_name"`, always quoted.
    pub qualified_name: String,
    /// The nodes to write, every one of them (one, except for reference tables and hash tables
    /// with replication factor > 1).
    pub placements: Vec<NodeIndex>,
}

/// A table to route rows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitusTable {
    /// `pg_class.oid` on the target (the coordinator's shell table for Citus).
    pub oid: u32,
    /// Schema name.
    pub schema: String,
    /// Relation name.
    pub name: String,
    /// Distribution kind.
    pub kind: TableKind,
    /// `pg_dist_partition.colocationid` (0 for Citus local and plain tables).
    pub colocation_id: i32,
    /// The distribution column, for hash tables.
    pub dist_column: Option<DistColumn>,
    /// Shards in routing order (ascending hash range).
    pub shards: Vec<Shard>,
    /// Value → shard index.
    pub router: TableRouter,
    /// Enum types whose labels the router depends on (watched for new labels).
    pub enum_types: Vec<u32>,
}

impl CitusTable {
    /// `"schema"."name"`.
    pub fn qualified_name(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }

    /// Routes a distribution value in binary send format (`None` = NULL). Hot path.
    #[inline]
    pub fn route_binary(&self, value: Option<&[u8]>) -> Result<ShardIndex, RouteError> {
        self.router.route_binary(value)
    }

    /// Routes a distribution value in text output format (`None` = NULL). Hot path.
    #[inline]
    pub fn route_text(&self, value: Option<&[u8]>) -> Result<ShardIndex, RouteError> {
        self.router.route_text(value)
    }

    /// The shard at `index`; `None` only for an index not produced by this table's router.
    pub fn shard(&self, index: ShardIndex) -> Option<&Shard> {
        self.shards.get(index)
    }

    /// Wraps a routing failure with this table's name and distribution column.
    pub fn route_error(&self, source: RouteError) -> CitusError {
        CitusError::Route {
            table: format!("{}.{}", self.schema, self.name),
            column: self
                .dist_column
                .as_ref()
                .map_or_else(String::new, |c| c.name.clone()),
            source,
        }
    }
}

/// Where the catalog was found and what the target supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CitusCatalog {
    /// Schema holding `pg_dist_partition` (`pg_catalog` on real Citus).
    pub schema: String,
    /// Whether `lock_shard_metadata(integer, bigint[])` exists (real Citus; ROUTING.md §4.6).
    pub has_lock_shard_metadata: bool,
    /// Whether `pg_dist_schema` exists (Citus 12+).
    pub has_dist_schema: bool,
}

/// The routing-relevant state of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// `Some` on a Citus (or Citus-shaped) target, `None` on plain PostgreSQL.
    pub citus: Option<CitusCatalog>,
    /// Nodes referenced by placements (and the target node for plain tables).
    pub nodes: Vec<Node>,
    /// The requested tables, in request order.
    pub tables: Vec<CitusTable>,
    /// Catalog digest taken in the same snapshot as the rest (see [`crate::citus::watch`]).
    pub(crate) digest: String,
}

impl Topology {
    /// The node at `index`.
    pub fn node(&self, index: NodeIndex) -> Option<&Node> {
        self.nodes.get(index)
    }

    /// A table by name: `schema.name`, or `name` alone if only one loaded table has it.
    pub fn table(&self, name: &str) -> Option<&CitusTable> {
        if let Some((schema, rel)) = name.split_once('.') {
            return self
                .tables
                .iter()
                .find(|t| t.schema == schema && t.name == rel);
        }
        let mut it = self.tables.iter().filter(|t| t.name == name);
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }

    /// The nodes a shard's rows go to.
    pub fn shard_nodes<'a>(&'a self, shard: &'a Shard) -> impl Iterator<Item = &'a Node> + 'a {
        shard.placements.iter().filter_map(|&i| self.nodes.get(i))
    }

    /// Whether this is a Citus target.
    pub fn is_citus(&self) -> bool {
        self.citus.is_some()
    }
}
