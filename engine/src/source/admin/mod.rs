//! Source management over an ordinary connection (`tokio_postgres`): what the replication
//! protocol cannot do or report.
//!
//! * [`server`]: version, `wal_level`, free replication slots and WAL senders, whether the
//!   role may replicate; [`check_ready_for_replication`] turns that into actionable errors.
//! * [`publication`]: create or update the publication for the chosen tables (or whole
//!   schemas) idempotently, and check that an existing one is usable.
//! * [`slot`]: a slot's state (`confirmed_flush_lsn`, `restart_lsn`, `wal_status`, active
//!   consumer) and lag in bytes, and the checks before resuming from it.
//!
//! Every function takes a `&tokio_postgres::Client` opened with [`crate::conn::connect`].

pub mod publication;
pub mod server;
pub mod slot;

pub use publication::{
    PublicationChange, PublicationScope, QualifiedName, check_publication, drop_publication,
    ensure_publication, publication_tables,
};
pub use server::{ServerInfo, check_ready_for_replication, server_info};
pub use slot::{SlotInfo, check_slot, current_wal_lsn, drop_slot_if_exists, slot_info};

use super::SourceError;
use super::error::ErrorContext;

fn pg_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> SourceError + '_ {
    move |e| SourceError::from_pg(e, what, ErrorContext::default())
}
