//! pgwarp's own logical replication client.
//!
//! `tokio_postgres` cannot speak the replication protocol (CopyBoth, replication commands), so
//! pgwarp carries a small client built on `postgres-protocol`'s message codecs and tokio:
//!
//! ```text
//!  ConnConfig ──► startup (socket, TLS, auth, replication=database)
//!                    │
//!                    ▼
//!            ReplicationClient ── IDENTIFY_SYSTEM, SHOW, CREATE/DROP_REPLICATION_SLOT
//!                    │   └──► ExportedSnapshot (holds the connection idle while readers import)
//!                    ▼ START_REPLICATION
//!            ReplicationStream ── next(): XLogData / keepalive (zero-copy payloads)
//!                    │            status updates every interval + on request
//!                    ▼ stop(): CopyDone, wait for the server
//!            ReplicationClient
//! ```
//!
//! The frame layouts (`w`, `k`, `r`) live in `pgwarp_decoder::stream`; this module only moves
//! bytes and keeps the connection alive.

mod client;
pub mod commands;
mod feedback;
mod snapshot;
mod startup;
mod stream;
#[cfg(test)]
mod stream_tests;
mod wire;

pub use client::{CreatedSlot, ReplicationClient, SystemIdentity, TextRow};
pub use commands::{CreateSlotOptions, SnapshotAction, StreamOptions, max_proto_version};
pub use feedback::{FeedbackHandle, ReportedPositions};
pub use snapshot::ExportedSnapshot;
pub use startup::SESSION_PARAMETERS;
pub use stream::{ReplicationStream, message_bytes};
