//! Citus topology and the shard router: place every row exactly where Citus would.
//!
//! ```text
//!  startup:  Topology::load(client, target, tables) ──► Topology { nodes, tables }
//!            (catalog snapshot: pg_dist_partition/shard/placement/node, pg_type, pg_enum)
//!
//!  per row:  table.route_binary(Some(value)) ──► ShardIndex ──► table.shard(i).placements
//!            (HashKernel: PostgreSQL's hash, bit for bit;       └─► topology.node(n)
//!             ShardRanges: uniform arithmetic or binary search)
//!
//!  per batch: TopologyWatch::check(client) ──► Unchanged | Changed (reload, re-route)
//!             lock::lock_shard_metadata on real Citus nodes (ROUTING.md §4.6)
//! ```
//!
//! The specification is `../shared/citus/ROUTING.md`, checked against a real Citus 13.2
//! cluster; `hash-vectors.csv` beside it drives the unit tests of [`hash`].

pub mod error;
pub mod hash;
pub mod lock;
pub mod names;
pub mod partkey;
pub mod router;
pub mod topology;
pub mod watch;

pub use error::CitusError;
pub use hash::{EnumLabels, HashError, HashKernel};
pub use router::{RouteError, ShardIndex, ShardRanges, TableRouter};
pub use topology::{
    CitusCatalog, CitusTable, DistColumn, Node, NodeIndex, Shard, TableKind, TargetAddr, Topology,
};
pub use watch::{TopologyStatus, TopologyWatch};
