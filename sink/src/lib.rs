//! pgwarp-sink: per-node writers for pgwarp.
//!
//! The engine routes every row to a shard and a node; this crate writes them there, fast and
//! exactly once.
//!
//! ```text
//!            engine (router, batcher)                        node (worker or plain PostgreSQL)
//!  NodeBatch { changes: [Insert|Update|Delete|Truncate],   ┌──────────────────────────────────┐
//!              last_commit_lsn, idempotent }               │ BEGIN                            │
//!        │                                                 │ lock pgwarp.progress row, skip?  │
//!        ▼                                                 │ COPY staged rows (temp table)    │
//!  plan: segments cut at TRUNCATE; per row net effect  ──► │ DELETE … USING stage / moves     │
//!        (compact); phases delete → update → insert        │ UPDATE … FROM stage (by columns) │
//!        │                                                 │ COPY rows INTO shard (binary)    │
//!        ▼                                                 │ upsert progress; COMMIT          │
//!  Lane (one connection) ── retries transient failures ──► └──────────────────────────────────┘
//! ```
//!
//! * [`TargetTable`] / [`ShardTarget`]: what the engine's router says about a table and a
//!   shard table on a node.
//! * [`Change`] / [`NodeBatch`] / [`Row`]: routed changes; rows are pgoutput tuples (binary or
//!   text) or binary COPY tuples from a snapshot, written without decoding values; snapshot
//!   chunks can also come in bulk ([`Change::InsertRows`]), forwarded to COPY untouched.
//! * [`NodeWriter`] / [`Lane`]: connections to a node, taken from an injected [`Connector`];
//!   a lane can also hold one transaction open across calls ([`Lane::begin_open`]), for a
//!   source transaction applied while it streams, committed with the progress row at its end.
//! * [`SinkError`]: one error type, [`SinkError::is_transient`] for retry decisions.
//!
//! Design notes live with the code: the compaction rules and why the phase order is correct in
//! `compact`, the OID rewrite in `oid_rewrite`, staging tables in `sql`, exactly-once progress in
//! `progress`, retry in `lane`, open transactions in `open`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod catalog;
mod change;
pub mod class;
mod compact;
mod connector;
mod copy_format;
mod error;
mod exec;
mod image;
mod lane;
mod oid_rewrite;
mod open;
mod plan;
mod progress;
pub mod quote;
mod row;
mod runs;
mod segment;
mod sql;
mod target;
mod write;
mod writer;

pub use change::{Change, NodeBatch};
pub use connector::{ConnectError, ConnectFuture, Connector, NoTlsConnector};
pub use error::{BoxError, SinkError, is_transient_pg};
pub use lane::{ApplyReport, Lane};
pub use plan::Counts;
pub use quote::quote_ident;
pub use row::{BINARY_COPY_SIGNATURE, CopyFields, CopyTuple, Row, RowColumns, split_binary_copy};
pub use target::{Shard, ShardTarget, TargetTable};
pub use writer::{NodeWriter, RetryPolicy, WriterConfig};
