//! Encoding messages back to wire bytes.
//!
//! The encoders produce exactly the bytes PostgreSQL sends, so that `decode(encode(m)) == m` and,
//! for every frame the decoder accepts, `encode(decode(f)) == f`. They serve the property tests,
//! the fuzz seed corpus and the benchmarks (which synthesize streams), and the standby status
//! update that a client really sends.

use bytes::{BufMut, BytesMut};

use crate::lsn::Lsn;
use crate::message::*;
use crate::time::PgTimestamp;
use crate::tuple::TupleData;

/// A value that cannot be represented on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A length does not fit its `Int32` field.
    #[error("{field} too long to encode: {len} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A count does not fit its field.
    #[error("too many {field} to encode: {count}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// The count.
        count: usize,
    },
    /// A string contains a NUL byte, which would end it early on the wire.
    #[error("{field} contains a NUL byte")]
    NulInString {
        /// The field.
        field: &'static str,
    },
}

impl Message {
    /// Appends this message's wire form (tag first) to `buf`.
    ///
    /// The `xid` of messages inside a stream segment is written when it is `Some`, and the
    /// abort LSN and time of a Stream Abort when `parallel` is `Some`: the encoder writes what
    /// the value holds and leaves protocol-version checks to the decoder.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        // Measure before writing so a failed encode leaves `buf` as it was.
        let start = buf.len();
        let result = self.encode_unchecked(buf);
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }

    /// Encodes this message into a new buffer.
    pub fn to_bytes(&self) -> Result<bytes::Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    fn encode_unchecked(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(self.tag());
        match self {
            Message::Begin(m) => {
                put_lsn(buf, m.final_lsn);
                put_time(buf, m.commit_time);
                buf.put_u32(m.xid);
            }
            Message::Commit(m) => {
                buf.put_u8(m.flags);
                put_lsn(buf, m.commit_lsn);
                put_lsn(buf, m.end_lsn);
                put_time(buf, m.commit_time);
            }
            Message::Origin(m) => {
                put_lsn(buf, m.commit_lsn);
                put_cstr(buf, &m.name, "origin name")?;
            }
            Message::Relation(m) => {
                put_xid(buf, m.xid);
                buf.put_u32(m.relation_id);
                put_cstr(buf, &m.namespace, "namespace")?;
                put_cstr(buf, &m.name, "relation name")?;
                buf.put_u8(m.replica_identity.to_byte());
                let count = u16::try_from(m.columns.len()).map_err(|_| EncodeError::TooMany {
                    field: "relation columns",
                    count: m.columns.len(),
                })?;
                buf.put_u16(count);
                for c in &m.columns {
                    buf.put_u8(c.flags);
                    put_cstr(buf, &c.name, "column name")?;
                    buf.put_u32(c.type_id);
                    buf.put_i32(c.type_modifier);
                }
            }
            Message::Type(m) => {
                put_xid(buf, m.xid);
                buf.put_u32(m.type_id);
                put_cstr(buf, &m.namespace, "namespace")?;
                put_cstr(buf, &m.name, "type name")?;
            }
            Message::Insert(m) => {
                put_xid(buf, m.xid);
                buf.put_u32(m.relation_id);
                put_tuple(buf, b'N', &m.new);
            }
            Message::Update(m) => {
                put_xid(buf, m.xid);
                buf.put_u32(m.relation_id);
                if let Some(old) = &m.old {
                    put_old(buf, old);
                }
                put_tuple(buf, b'N', &m.new);
            }
            Message::Delete(m) => {
                put_xid(buf, m.xid);
                buf.put_u32(m.relation_id);
                put_old(buf, &m.old);
            }
            Message::Truncate(m) => {
                put_xid(buf, m.xid);
                let count =
                    i32::try_from(m.relation_ids.len()).map_err(|_| EncodeError::TooMany {
                        field: "truncated relations",
                        count: m.relation_ids.len(),
                    })?;
                buf.put_i32(count);
                buf.put_u8(m.options);
                for &oid in &m.relation_ids {
                    buf.put_u32(oid);
                }
            }
            Message::Logical(m) => {
                put_xid(buf, m.xid);
                buf.put_u8(m.flags);
                put_lsn(buf, m.lsn);
                put_cstr(buf, &m.prefix, "prefix")?;
                put_len(buf, m.content.len(), "message content")?;
                buf.put_slice(&m.content);
            }
            Message::StreamStart(m) => {
                buf.put_u32(m.xid);
                buf.put_u8(u8::from(m.first_segment));
            }
            Message::StreamStop => {}
            Message::StreamCommit(m) => {
                buf.put_u32(m.xid);
                buf.put_u8(m.flags);
                put_lsn(buf, m.commit_lsn);
                put_lsn(buf, m.end_lsn);
                put_time(buf, m.commit_time);
            }
            Message::StreamAbort(m) => {
                buf.put_u32(m.xid);
                buf.put_u32(m.subxid);
                if let Some(p) = &m.parallel {
                    put_lsn(buf, p.abort_lsn);
                    put_time(buf, p.abort_time);
                }
            }
            Message::BeginPrepare(m) => {
                put_lsn(buf, m.prepare_lsn);
                put_lsn(buf, m.end_lsn);
                put_time(buf, m.prepare_time);
                buf.put_u32(m.xid);
                put_cstr(buf, &m.gid, "gid")?;
            }
            Message::Prepare(m) | Message::StreamPrepare(m) => {
                buf.put_u8(m.flags);
                put_lsn(buf, m.prepare_lsn);
                put_lsn(buf, m.end_lsn);
                put_time(buf, m.prepare_time);
                buf.put_u32(m.xid);
                put_cstr(buf, &m.gid, "gid")?;
            }
            Message::CommitPrepared(m) => {
                buf.put_u8(m.flags);
                put_lsn(buf, m.commit_lsn);
                put_lsn(buf, m.end_lsn);
                put_time(buf, m.commit_time);
                buf.put_u32(m.xid);
                put_cstr(buf, &m.gid, "gid")?;
            }
            Message::RollbackPrepared(m) => {
                buf.put_u8(m.flags);
                put_lsn(buf, m.prepare_end_lsn);
                put_lsn(buf, m.rollback_end_lsn);
                put_time(buf, m.prepare_time);
                put_time(buf, m.rollback_time);
                buf.put_u32(m.xid);
                put_cstr(buf, &m.gid, "gid")?;
            }
        }
        Ok(())
    }
}

#[inline]
pub(crate) fn put_lsn(buf: &mut BytesMut, lsn: Lsn) {
    buf.put_u64(lsn.0);
}

#[inline]
pub(crate) fn put_time(buf: &mut BytesMut, t: PgTimestamp) {
    buf.put_i64(t.0);
}

#[inline]
fn put_xid(buf: &mut BytesMut, xid: Option<u32>) {
    if let Some(xid) = xid {
        buf.put_u32(xid);
    }
}

fn put_len(buf: &mut BytesMut, len: usize, field: &'static str) -> Result<(), EncodeError> {
    let len = i32::try_from(len).map_err(|_| EncodeError::TooLong { field, len })?;
    buf.put_i32(len);
    Ok(())
}

fn put_cstr(buf: &mut BytesMut, s: &str, field: &'static str) -> Result<(), EncodeError> {
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::NulInString { field });
    }
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
    Ok(())
}

#[inline]
fn put_tuple(buf: &mut BytesMut, marker: u8, tuple: &TupleData) {
    buf.put_u8(marker);
    buf.put_slice(tuple.wire_bytes());
}

fn put_old(buf: &mut BytesMut, old: &OldTuple) {
    match old {
        OldTuple::Key(t) => put_tuple(buf, b'K', t),
        OldTuple::Full(t) => put_tuple(buf, b'O', t),
    }
}
