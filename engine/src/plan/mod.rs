//! `pgwarp plan`: propose how to distribute a database before moving it to Citus.
//!
//! ```text
//!  source catalog ──load──► Snapshot ──propose (pure)──► Plan ──render──► report (stdout)
//!  (sizes, rows, keys, FKs)                                           └──► SQL file (target)
//! ```
//!
//! The decision rules are in [`decide`]; [`render`] turns the plan into the SQL that
//! `pgwarp schema --plan` applies on the target and into the report, which also lists the
//! changes the source needs first (backfilled tenant columns, replica identities).

pub mod catalog;
pub mod decide;
mod keys;
pub mod render;
mod tenant;

#[cfg(test)]
mod decide_tests;

use tokio_postgres::Client;

pub use catalog::{ColumnStat, ForeignKey, KeyStat, Snapshot, TableStat};
pub use decide::{Placement, Plan, PlanOptions, propose};

use crate::verify::pg_message;

/// Default `--min-size`: tables at least this large are distributed.
pub const DEFAULT_MIN_SIZE: i64 = 100 * 1024 * 1024;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A catalog query failed.
    #[error("{what} on the source: {}", pg_message(.source))]
    Query {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Reads the source and proposes a plan.
pub async fn plan(
    source: &Client,
    schemas: &[String],
    options: &PlanOptions,
) -> Result<(Snapshot, Plan), PlanError> {
    let snap = catalog::load(source, schemas).await?;
    let plan = propose(&snap, options);
    Ok((snap, plan))
}
