//! pgwarp-decoder: the pure decoding layer of pgwarp.
//!
//! Bytes in, typed messages out. This crate knows the two wire formats pgwarp reads from a
//! logical replication slot and nothing else: no sockets, no runtime, no logging, so it can be
//! fuzzed and benchmarked on its own.
//!
//! ```text
//!  CopyData payload ─► stream::ReplicationMessage ─┬─ 'k' PrimaryKeepalive
//!                                                   └─ 'w' XLogData ─► pgoutput frame
//!  pg_logical_slot_peek_binary_changes.data ────────────────────────► pgoutput frame
//!                                                                          │
//!                         Decoder (protocol version, stream-segment state) ▼
//!                                                                       Message
//!                               Insert / Update / Delete ─► TupleData ─► ColumnRef / ColumnValue
//! ```
//!
//! * [`stream`]: XLogData and keepalive framing, and the standby status update a client sends.
//! * [`pgoutput`]: one pgoutput message (protocol versions 1 to 4) from one frame, stateless.
//! * [`Decoder`]: the stateful wrapper for a whole stream (tracks Stream Start / Stream Stop).
//! * [`message`]: the message types; [`tuple`]: row images with zero-copy column values.
//! * [`encode`]: the inverse of decoding, for tests, fuzz seeds and benchmarks.
//! * [`capture`]: a trivial file format for recorded streams (`decoder/testdata/`).
//! * [`Lsn`] and [`PgTimestamp`]: typed WAL positions and wire times.
//!
//! Guarantees: no input panics or makes the decoder allocate more than the frame could hold;
//! every error is a [`DecodeError`] naming the message, the byte offset and, where known, the LSN;
//! column values are slices of the input frame (one reference-count increment per tuple, no
//! allocation per column); and a frame the decoder accepts re-encodes to exactly the same bytes.
//!
//! Strings (relation, namespace, column, type, origin and prefix names, GIDs) are decoded as
//! UTF-8 `String`s: PostgreSQL sends them in the database encoding, which for pgwarp's sources is
//! UTF-8; a name in another encoding is reported as [`DecodeErrorKind::InvalidUtf8`]. Logical
//! message *content* stays raw bytes.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod capture;
mod decoder;
pub mod encode;
pub mod error;
pub mod lsn;
pub mod message;
pub mod pgoutput;
mod reader;
pub mod stream;
pub mod time;
pub mod tuple;

pub use decoder::{Decoder, StreamEvent};
pub use encode::EncodeError;
pub use error::{DecodeError, DecodeErrorKind};
pub use lsn::{Lsn, ParseLsnError};
pub use message::{
    AbortInfo, Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage,
    Message, Oid, OldTuple, Origin, Prepare, Relation, RelationColumn, ReplicaIdentity,
    RollbackPrepared, StreamAbort, StreamCommit, StreamStart, Truncate, Type, Update,
};
pub use pgoutput::{DecodeContext, ProtocolVersion, decode_message};
pub use stream::{PrimaryKeepalive, ReplicationMessage, StandbyStatusUpdate, XLogData};
pub use time::PgTimestamp;
pub use tuple::{ColumnRef, ColumnValue, Columns, TupleData};
