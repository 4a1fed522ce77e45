//! The source side: replication connection, slots, publications, snapshots.
//!
//! * [`replication`]: pgwarp's replication client (startup, slot commands, the stream with
//!   its feedback loop).
//! * [`admin`]: management over an ordinary connection: publications, slot health and lag,
//!   server capabilities.
//! * [`SourceError`]: every failure, with the variants an operator acts on.
//! * [`quote`]: quoting for SQL and replication commands.

pub mod admin;
mod error;
pub mod quote;
pub mod replication;

pub use error::{ErrorContext, SourceError};
pub use replication::{
    CreateSlotOptions, CreatedSlot, ExportedSnapshot, FeedbackHandle, ReplicationClient,
    ReplicationStream, SnapshotAction, StreamOptions, SystemIdentity,
};
