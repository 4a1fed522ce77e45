//! Decoding one pgoutput message from its frame.
//!
//! A frame is one message: the data of one XLogData (`w`) payload on a replication connection,
//! or one `data` value of `pg_logical_slot_{get,peek}_binary_changes`. The layout of a message
//! depends on two things the bytes do not say, which the caller passes in a [`DecodeContext`]:
//!
//! * the **protocol version** (`proto_version` option): Stream messages exist from 2 on and the
//!   Stream Abort LSN and time fields from 4 on (the two-phase messages, documented from 3 on,
//!   are accepted in any version: see [`ProtocolVersion`]);
//! * whether the message is **inside a stream segment** (between Stream Start and Stream Stop):
//!   there, Relation, Type, Insert, Update, Delete, Truncate and logical decoding messages carry
//!   an extra `Int32` xid right after the tag. Origin messages never do. For changes made in a
//!   subtransaction it is the subtransaction's xid (PostgreSQL 15 sends the subxact xid on
//!   Relation, Insert and Truncate, and the top-level xid on logical decoding messages).
//!
//! [`crate::Decoder`] tracks the second for a whole stream; this module is stateless.
//!
//! Stream Abort's abort LSN and time are sent only with protocol 4 *and* `streaming = parallel`.
//! Rather than asking for a second option the caller might get wrong, the decoder reads them
//! when the negotiated version is 4 or more and exactly 16 bytes remain after the subxid: a frame
//! is always exactly one message, so the remaining length is unambiguous. Under protocol 1 to 3
//! those bytes are rejected as trailing data.
//!
//! Every frame must be consumed exactly: trailing bytes are an error, which catches a version
//! mismatch early instead of misreading the stream.

use bytes::Bytes;

use crate::error::{DecodeError, DecodeErrorKind};
use crate::message::*;
use crate::reader::Reader;
use crate::tuple::TupleData;

/// A pgoutput protocol version (`proto_version` option of `START_REPLICATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// PostgreSQL 10+: whole transactions at commit.
    V1 = 1,
    /// PostgreSQL 14+: streaming of in-progress transactions.
    V2 = 2,
    /// PostgreSQL 15+: two-phase commit.
    V3 = 3,
    /// PostgreSQL 16+: parallel apply of streamed transactions.
    V4 = 4,
}

impl ProtocolVersion {
    /// The newest version this crate decodes.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V4;

    /// The number sent as `proto_version`.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The version numbered `v`, if known.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => ProtocolVersion::V1,
            2 => ProtocolVersion::V2,
            3 => ProtocolVersion::V3,
            4 => ProtocolVersion::V4,
            _ => return None,
        })
    }

    /// The first version in which PostgreSQL sends the message with tag `tag`.
    ///
    /// Only the Stream messages are gated (pgoutput refuses `streaming` below version 2). The
    /// two-phase messages are documented as version 3+, but PostgreSQL 15 sends them under any
    /// version when the slot itself was created with `two_phase = true` (observed with
    /// `pg_logical_slot_peek_binary_changes` and `proto_version '2'`), and their layout does not
    /// depend on the version, so they are accepted everywhere.
    fn first_with(tag: u8) -> ProtocolVersion {
        match tag {
            b'S' | b'E' | b'c' | b'A' => ProtocolVersion::V2,
            _ => ProtocolVersion::V1,
        }
    }
}

/// What the decoder must know besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeContext {
    /// The negotiated protocol version.
    pub version: ProtocolVersion,
    /// Whether the frame is inside a stream segment (Stream Start .. Stream Stop).
    pub in_stream: bool,
}

impl DecodeContext {
    /// A context outside any stream segment.
    pub fn new(version: ProtocolVersion) -> Self {
        DecodeContext {
            version,
            in_stream: false,
        }
    }
}

/// Decodes one pgoutput message; value bytes in the result are slices of `frame`.
pub fn decode_message(frame: &Bytes, ctx: DecodeContext) -> Result<Message, DecodeError> {
    decode_in(frame, 0, ctx)
}

/// Decodes the message that fills `buf` from offset `base` on (an XLogData payload inside its
/// CopyData buffer), slicing values straight from `buf`. Error offsets are relative to `base`.
#[inline]
pub(crate) fn decode_in(
    buf: &Bytes,
    base: usize,
    ctx: DecodeContext,
) -> Result<Message, DecodeError> {
    let frame = buf.get(base..).unwrap_or_default();
    let Some(&tag) = frame.first() else {
        return Err(DecodeError::new(
            "pgoutput",
            None,
            0,
            DecodeErrorKind::Empty,
        ));
    };
    let mut r = Reader::new(frame, 1, Message::name_of(tag));
    if ProtocolVersion::first_with(tag) > ctx.version {
        return Err(r.error_at(
            0,
            DecodeErrorKind::NotInVersion {
                version: ctx.version.as_u32(),
            },
        ));
    }
    let r = &mut r;
    let xid = |r: &mut Reader<'_>| -> Result<Option<u32>, DecodeError> {
        if ctx.in_stream {
            r.u32("xid").map(Some)
        } else {
            Ok(None)
        }
    };
    let message = match tag {
        b'I' => Message::Insert(Insert {
            xid: xid(r)?,
            relation_id: r.u32("relation id")?,
            new: new_tuple(r, buf, base)?,
        }),
        b'U' => {
            let xid = xid(r)?;
            let relation_id = r.u32("relation id")?;
            let at = r.pos();
            let (old, new) = match r.u8("tuple type")? {
                b'N' => (None, TupleData::parse(r, buf, base)?),
                marker => (
                    Some(old_tuple(r, buf, base, at, marker)?),
                    new_tuple(r, buf, base)?,
                ),
            };
            Message::Update(Update {
                xid,
                relation_id,
                old,
                new,
            })
        }
        b'D' => {
            let xid = xid(r)?;
            let relation_id = r.u32("relation id")?;
            let at = r.pos();
            let marker = r.u8("tuple type")?;
            let old = old_tuple(r, buf, base, at, marker)?;
            Message::Delete(Delete {
                xid,
                relation_id,
                old,
            })
        }
        b'B' => Message::Begin(Begin {
            final_lsn: r.lsn("final lsn")?,
            commit_time: r.timestamp("commit time")?,
            xid: r.u32("xid")?,
        }),
        b'C' => Message::Commit(Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit lsn")?,
            end_lsn: r.lsn("end lsn")?,
            commit_time: r.timestamp("commit time")?,
        }),
        b'O' => Message::Origin(Origin {
            commit_lsn: r.lsn("origin commit lsn")?,
            name: r.cstr("origin name")?,
        }),
        b'R' => {
            let xid = xid(r)?;
            Message::Relation(relation(r, xid)?)
        }
        b'Y' => Message::Type(Type {
            xid: xid(r)?,
            type_id: r.u32("type id")?,
            namespace: r.cstr("namespace")?,
            name: r.cstr("type name")?,
        }),
        b'T' => {
            let xid = xid(r)?;
            Message::Truncate(truncate(r, xid)?)
        }
        b'M' => {
            let xid = xid(r)?;
            let flags = r.u8("flags")?;
            let lsn = r.lsn("message lsn")?;
            let prefix = r.cstr("prefix")?;
            let len = r.length("content length")?;
            let start = r.pos();
            r.skip(len, "content")?;
            Message::Logical(LogicalMessage {
                xid,
                flags,
                lsn,
                prefix,
                content: buf.slice(base + start..base + r.pos()),
            })
        }
        b'S' => Message::StreamStart(StreamStart {
            xid: r.u32("xid")?,
            first_segment: r.bool("first segment")?,
        }),
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit(StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit lsn")?,
            end_lsn: r.lsn("end lsn")?,
            commit_time: r.timestamp("commit time")?,
        }),
        b'A' => {
            let xid = r.u32("xid")?;
            let subxid = r.u32("subxid")?;
            let parallel = if ctx.version >= ProtocolVersion::V4 && r.remaining() == 16 {
                Some(AbortInfo {
                    abort_lsn: r.lsn("abort lsn")?,
                    abort_time: r.timestamp("abort time")?,
                })
            } else {
                None
            };
            Message::StreamAbort(StreamAbort {
                xid,
                subxid,
                parallel,
            })
        }
        b'b' => Message::BeginPrepare(BeginPrepare {
            prepare_lsn: r.lsn("prepare lsn")?,
            end_lsn: r.lsn("end lsn")?,
            prepare_time: r.timestamp("prepare time")?,
            xid: r.u32("xid")?,
            gid: r.cstr("gid")?,
        }),
        b'P' => Message::Prepare(prepare(r)?),
        b'p' => Message::StreamPrepare(prepare(r)?),
        b'K' => Message::CommitPrepared(CommitPrepared {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit lsn")?,
            end_lsn: r.lsn("end lsn")?,
            commit_time: r.timestamp("commit time")?,
            xid: r.u32("xid")?,
            gid: r.cstr("gid")?,
        }),
        b'r' => Message::RollbackPrepared(RollbackPrepared {
            flags: r.u8("flags")?,
            prepare_end_lsn: r.lsn("prepare end lsn")?,
            rollback_end_lsn: r.lsn("rollback end lsn")?,
            prepare_time: r.timestamp("prepare time")?,
            rollback_time: r.timestamp("rollback time")?,
            xid: r.u32("xid")?,
            gid: r.cstr("gid")?,
        }),
        _ => return Err(r.error_at(0, DecodeErrorKind::UnknownTag)),
    };
    r.finish()?;
    Ok(message)
}

#[cold]
fn invalid_byte(r: &Reader<'_>, at: usize, field: &'static str, value: u8) -> DecodeError {
    r.error_at(at, DecodeErrorKind::InvalidByte { field, value })
}

/// Reads the old tuple after its marker (`K`: key columns, `O`: whole row), read at `at`.
#[inline]
fn old_tuple(
    r: &mut Reader<'_>,
    buf: &Bytes,
    base: usize,
    at: usize,
    marker: u8,
) -> Result<OldTuple, DecodeError> {
    match marker {
        b'K' => Ok(OldTuple::Key(TupleData::parse(r, buf, base)?)),
        b'O' => Ok(OldTuple::Full(TupleData::parse(r, buf, base)?)),
        value => Err(invalid_byte(r, at, "tuple type", value)),
    }
}

/// Reads an `N` marker and the new tuple after it.
#[inline]
fn new_tuple(r: &mut Reader<'_>, buf: &Bytes, base: usize) -> Result<TupleData, DecodeError> {
    let at = r.pos();
    match r.u8("tuple type")? {
        b'N' => TupleData::parse(r, buf, base),
        value => Err(invalid_byte(r, at, "new tuple type", value)),
    }
}

fn relation(r: &mut Reader<'_>, xid: Option<u32>) -> Result<Relation, DecodeError> {
    let relation_id = r.u32("relation id")?;
    let namespace = r.cstr("namespace")?;
    let name = r.cstr("relation name")?;
    let at = r.pos();
    let ident = r.u8("replica identity")?;
    let replica_identity = ReplicaIdentity::from_byte(ident)
        .ok_or_else(|| invalid_byte(r, at, "replica identity", ident))?;
    let count = usize::from(r.u16("column count")?);
    // Each column takes at least 10 bytes (flags, empty name, type, typmod): never reserve more
    // than the frame could hold.
    let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
    for _ in 0..count {
        columns.push(RelationColumn {
            flags: r.u8("column flags")?,
            name: r.cstr("column name")?,
            type_id: r.u32("column type id")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        relation_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn truncate(r: &mut Reader<'_>, xid: Option<u32>) -> Result<Truncate, DecodeError> {
    let at = r.pos();
    let count = r.i32("relation count")?;
    let options = r.u8("options")?;
    let count = match usize::try_from(count) {
        Ok(n) if n <= r.remaining() / 4 => n,
        _ => {
            return Err(r.error_at(
                at,
                DecodeErrorKind::InvalidLength {
                    field: "relation count",
                    value: i64::from(count),
                    available: r.remaining(),
                },
            ));
        }
    };
    let mut relation_ids = Vec::with_capacity(count);
    for _ in 0..count {
        relation_ids.push(r.u32("relation id")?);
    }
    Ok(Truncate {
        xid,
        options,
        relation_ids,
    })
}

fn prepare(r: &mut Reader<'_>) -> Result<Prepare, DecodeError> {
    Ok(Prepare {
        flags: r.u8("flags")?,
        prepare_lsn: r.lsn("prepare lsn")?,
        end_lsn: r.lsn("end lsn")?,
        prepare_time: r.timestamp("prepare time")?,
        xid: r.u32("xid")?,
        gid: r.cstr("gid")?,
    })
}

#[cfg(test)]
mod tests;
