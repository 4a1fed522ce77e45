//! Citus-shaped clusters for tests: a coordinator and N workers built from a declarative
//! [`ClusterSpec`], or a real Citus cluster when `$PGWARP_TEST_CITUS_COORDINATOR` is set.
//!
//! ```text
//!  coordinator (group 0)                 worker (group 1)              worker (group 2)
//!  ─────────────────────                 ────────────────              ────────────────
//!  pg_catalog.pg_dist_* (Citus 13.2)     pg_dist_* copy (MX)           pg_dist_* copy (MX)
//!  <schema>.users      (shell, empty)    <schema>.users (shell)        <schema>.users (shell)
//!  <schema>.products_102072 (reference)  <schema>.users_102008 ...     <schema>.users_102009 ...
//! ```
//!
//! The fake cluster reproduces what an engine can observe of a real one: catalog rows with the
//! same ids, ranges, placements and `partkey` text as Citus would write (checked against a real
//! Citus 13.2 catalog in `tests/harness_cluster.rs`), shell tables on every node, shard tables
//! named by Citus's rule on the nodes that hold them, and SQL versions of the Citus functions
//! engines call (`catalog.rs`). It does not reproduce Citus's distributed query planner:
//! reading the shell `users` on the coordinator returns nothing, which is exactly the
//! behaviour that makes writing through the shell a bug.
//!
//! ```no_run
//! use pgwarp_tests::cluster::{CitusCluster, ClusterSpec};
//! # fn main() -> Result<(), pgwarp_tests::HarnessError> {
//! let cluster = CitusCluster::shared_or_start(2)?;
//! let spec = ClusterSpec::new()
//!     .distributed("users", "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)", "user_id", 32)
//!     .reference("products", "CREATE TABLE products (id int PRIMARY KEY)");
//! let fixture = cluster.create(&spec)?;
//! let schema = fixture.schema();          // use it for every name, in the source database too
//! assert_eq!(fixture.count("users")?, 0);  // reads the shard tables on the workers
//! # Ok(()) }
//! ```

pub mod catalog;
mod fake;
pub mod fixture;
pub mod layout;
mod load;
mod real;
pub mod shard_name;
pub mod spec;
mod split;

use std::sync::{Mutex, OnceLock};

pub use fixture::{CitusFixture, FixtureNode, ShardInfo};
pub use spec::{ClusterSpec, TableKind, TableSpec};

use crate::error::Result;
use crate::server::PgServer;

/// Environment variable naming a real Citus coordinator (a libpq connection string).
pub const CITUS_COORDINATOR_ENV: &str = "PGWARP_TEST_CITUS_COORDINATOR";

/// A set of servers that fixtures are created on.
#[derive(Debug)]
pub struct CitusCluster {
    kind: ClusterKind,
}

#[derive(Debug)]
enum ClusterKind {
    Fake {
        coordinator: Box<PgServer>,
        workers: Vec<PgServer>,
    },
    Real {
        conn_string: String,
    },
}

impl CitusCluster {
    /// The real cluster of `$PGWARP_TEST_CITUS_COORDINATOR` if set (`workers` is then
    /// ignored), else a new fake cluster with `workers` workers.
    pub fn start(workers: usize) -> Result<CitusCluster> {
        match std::env::var(CITUS_COORDINATOR_ENV) {
            Ok(conn_string) if !conn_string.trim().is_empty() => {
                real::parse(&conn_string)?;
                Ok(CitusCluster {
                    kind: ClusterKind::Real { conn_string },
                })
            }
            _ => CitusCluster::start_fake(workers),
        }
    }

    /// A new fake cluster (coordinator + `workers` servers, started in parallel), whatever the
    /// environment says.
    pub fn start_fake(workers: usize) -> Result<CitusCluster> {
        let mut servers: Vec<Result<PgServer>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..=workers)
                .map(|_| scope.spawn(PgServer::start))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let coordinator = servers.remove(0)?;
        let workers = servers.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(CitusCluster {
            kind: ClusterKind::Fake {
                coordinator: Box::new(coordinator),
                workers,
            },
        })
    }

    /// A cluster shared by every test of the process that asks for the same worker count,
    /// started on first use (see [`CitusCluster::start`]). Fixtures keep tests apart.
    pub fn shared_or_start(workers: usize) -> Result<&'static CitusCluster> {
        static SHARED: OnceLock<Mutex<Vec<(usize, &'static CitusCluster)>>> = OnceLock::new();
        let registry = SHARED.get_or_init(|| Mutex::new(Vec::new()));
        let mut clusters = registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, cluster)) = clusters.iter().find(|(n, _)| *n == workers) {
            return Ok(cluster);
        }
        let cluster: &'static CitusCluster = Box::leak(Box::new(CitusCluster::start(workers)?));
        clusters.push((workers, cluster));
        Ok(cluster)
    }

    /// Whether this is a real Citus cluster.
    pub fn is_real(&self) -> bool {
        matches!(self.kind, ClusterKind::Real { .. })
    }

    /// The fake cluster's coordinator server (None for a real cluster).
    pub fn coordinator_server(&self) -> Option<&PgServer> {
        match &self.kind {
            ClusterKind::Fake { coordinator, .. } => Some(coordinator),
            ClusterKind::Real { .. } => None,
        }
    }

    /// The fake cluster's worker servers, in start order (empty for a real cluster).
    pub fn worker_servers(&self) -> &[PgServer] {
        match &self.kind {
            ClusterKind::Fake { workers, .. } => workers,
            ClusterKind::Real { .. } => &[],
        }
    }

    /// Creates `spec` in a fresh database (fake) or fresh schemas (real).
    pub fn create(&self, spec: &ClusterSpec) -> Result<CitusFixture> {
        match &self.kind {
            ClusterKind::Fake {
                coordinator,
                workers,
            } => fake::create(coordinator, workers, spec),
            ClusterKind::Real { conn_string } => real::create(conn_string, spec),
        }
    }
}
