//! Streaming replication framing: the CopyData payloads of `START_REPLICATION`.
//!
//! After `START_REPLICATION SLOT s LOGICAL x/y (...)` the server sends CopyData messages whose
//! payload starts with a tag byte (PostgreSQL docs, "Streaming Replication Protocol"):
//!
//! * `w` XLogData: `Int64` start of the data in WAL, `Int64` current end of WAL on the server,
//!   `Int64` send time, then the data: for logical replication, exactly one pgoutput message;
//! * `k` primary keepalive: `Int64` current end of WAL, `Int64` send time, `Byte1` 1 if the
//!   server asks for an immediate reply (it is about to time out the client).
//!
//! The client answers with `r` standby status updates: `Int64` written, flushed and applied
//! positions (+1 past the last byte, as PostgreSQL expects), `Int64` client time, `Byte1` reply
//! requested. [`StandbyStatusUpdate::encode`] writes that payload; the caller wraps it in CopyData.
//!
//! The XLogData payload is returned as a zero-copy slice of the CopyData payload.

use bytes::{BufMut, Bytes, BytesMut};

use crate::encode::{put_lsn, put_time};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::lsn::Lsn;
use crate::reader::Reader;
use crate::time::PgTimestamp;

/// Size of the XLogData header, tag included: the pgoutput message starts at this offset.
pub const XLOG_DATA_HEADER_LEN: usize = 25;

/// XLogData (`w`): one chunk of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// Start of this data in the WAL.
    pub wal_start: Lsn,
    /// Current end of WAL on the server.
    pub wal_end: Lsn,
    /// Server clock at send time.
    pub send_time: PgTimestamp,
    /// The payload (one pgoutput message), a slice of the CopyData payload.
    pub data: Bytes,
}

/// Primary keepalive (`k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// Current end of WAL on the server.
    pub wal_end: Lsn,
    /// Server clock at send time.
    pub send_time: PgTimestamp,
    /// The server wants a status update now, or it will drop the connection.
    pub reply_requested: bool,
}

/// A CopyData payload sent by the server during streaming replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`
    XLogData(XLogData),
    /// `k`
    PrimaryKeepalive(PrimaryKeepalive),
}

impl ReplicationMessage {
    /// Decodes a CopyData payload; the XLogData payload is a slice of `payload`.
    pub fn decode(payload: &Bytes) -> Result<ReplicationMessage, DecodeError> {
        let tag = payload.first().copied();
        let (name, message) = match tag {
            Some(b'w') => ("xlog data", None),
            Some(b'k') => ("primary keepalive", None),
            Some(_) => ("replication", Some(DecodeErrorKind::UnknownTag)),
            None => ("replication", Some(DecodeErrorKind::Empty)),
        };
        if let Some(kind) = message {
            return Err(DecodeError::new(name, tag, 0, kind));
        }
        let mut r = Reader::new(payload, 1, name);
        if tag == Some(b'w') {
            let (wal_start, wal_end, send_time) = xlog_data_header(&mut r)?;
            Ok(ReplicationMessage::XLogData(XLogData {
                wal_start,
                wal_end,
                send_time,
                data: payload.slice(XLOG_DATA_HEADER_LEN..),
            }))
        } else {
            let k = PrimaryKeepalive {
                wal_end: r.lsn("wal end")?,
                send_time: r.timestamp("send time")?,
                reply_requested: r.bool("reply requested")?,
            };
            r.finish()?;
            Ok(ReplicationMessage::PrimaryKeepalive(k))
        }
    }

    /// Appends this message's payload (tag first, no CopyData header) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            ReplicationMessage::XLogData(w) => {
                buf.reserve(XLOG_DATA_HEADER_LEN + w.data.len());
                buf.put_u8(b'w');
                put_lsn(buf, w.wal_start);
                put_lsn(buf, w.wal_end);
                put_time(buf, w.send_time);
                buf.put_slice(&w.data);
            }
            ReplicationMessage::PrimaryKeepalive(k) => {
                buf.put_u8(b'k');
                put_lsn(buf, k.wal_end);
                put_time(buf, k.send_time);
                buf.put_u8(u8::from(k.reply_requested));
            }
        }
    }
}

/// Reads the XLogData header fields after the tag; the payload starts at
/// [`XLOG_DATA_HEADER_LEN`].
#[inline]
fn xlog_data_header(r: &mut Reader<'_>) -> Result<(Lsn, Lsn, PgTimestamp), DecodeError> {
    Ok((
        r.lsn("wal start")?,
        r.lsn("wal end")?,
        r.timestamp("send time")?,
    ))
}

/// If `payload` is an XLogData, its header; the message is `payload[XLOG_DATA_HEADER_LEN..]`.
#[inline]
pub(crate) fn peek_xlog_data(
    payload: &[u8],
) -> Option<Result<(Lsn, Lsn, PgTimestamp), DecodeError>> {
    if payload.first() != Some(&b'w') {
        return None;
    }
    Some(xlog_data_header(&mut Reader::new(payload, 1, "xlog data")))
}

/// Standby status update (`r`), sent by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Last WAL byte + 1 received and written.
    pub write_lsn: Lsn,
    /// Last WAL byte + 1 durably flushed: the slot may discard WAL before it.
    pub flush_lsn: Lsn,
    /// Last WAL byte + 1 applied.
    pub apply_lsn: Lsn,
    /// Client clock at send time.
    pub client_time: PgTimestamp,
    /// Ask the server to reply with a keepalive immediately.
    pub reply_requested: bool,
}

impl StandbyStatusUpdate {
    /// Length of the payload, tag included.
    pub const LEN: usize = 34;

    /// Appends the payload (tag first, no CopyData header) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(Self::LEN);
        buf.put_u8(b'r');
        put_lsn(buf, self.write_lsn);
        put_lsn(buf, self.flush_lsn);
        put_lsn(buf, self.apply_lsn);
        put_time(buf, self.client_time);
        buf.put_u8(u8::from(self.reply_requested));
    }

    /// Decodes a payload written by [`StandbyStatusUpdate::encode`] (for tests and tools that
    /// play the server side).
    pub fn decode(payload: &[u8]) -> Result<StandbyStatusUpdate, DecodeError> {
        let name = "standby status update";
        match payload.first() {
            Some(b'r') => {}
            Some(&t) => {
                return Err(DecodeError::new(
                    name,
                    Some(t),
                    0,
                    DecodeErrorKind::UnknownTag,
                ));
            }
            None => return Err(DecodeError::new(name, None, 0, DecodeErrorKind::Empty)),
        }
        let mut r = Reader::new(payload, 1, name);
        let s = StandbyStatusUpdate {
            write_lsn: r.lsn("write lsn")?,
            flush_lsn: r.lsn("flush lsn")?,
            apply_lsn: r.lsn("apply lsn")?,
            client_time: r.timestamp("client time")?,
            reply_requested: r.bool("reply requested")?,
        };
        r.finish()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_xlog_data_golden_bytes() {
        let payload = Bytes::from_static(
            b"w\x00\x00\x00\x00\x01\x6B\x37\x48\x00\x00\x00\x00\x01\x6B\x38\x00\
              \x00\x02\x8A\x5E\x3C\x1D\x40\x00E",
        );
        let ReplicationMessage::XLogData(w) = ReplicationMessage::decode(&payload).unwrap() else {
            panic!("expected xlog data")
        };
        assert_eq!(w.wal_start.to_string(), "0/16B3748");
        assert_eq!(w.wal_end.to_string(), "0/16B3800");
        assert_eq!(w.send_time, PgTimestamp(0x0002_8A5E_3C1D_4000));
        assert_eq!(w.data.as_ref(), b"E");
        assert_eq!(w.data.as_ptr(), payload[25..].as_ptr());
        let mut buf = BytesMut::new();
        ReplicationMessage::XLogData(w).encode(&mut buf);
        assert_eq!(buf.as_ref(), payload.as_ref());
    }

    #[test]
    fn decodes_keepalive_golden_bytes() {
        let payload = Bytes::from_static(
            b"k\x00\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x07\x01",
        );
        assert_eq!(
            ReplicationMessage::decode(&payload).unwrap(),
            ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                wal_end: Lsn(0x1_0000_0010),
                send_time: PgTimestamp(7),
                reply_requested: true,
            })
        );
    }

    #[test]
    fn encodes_standby_status_update_golden_bytes() {
        let update = StandbyStatusUpdate {
            write_lsn: Lsn(0x16B3748),
            flush_lsn: Lsn(0x16B3700),
            apply_lsn: Lsn(0x16B3600),
            client_time: PgTimestamp(1),
            reply_requested: false,
        };
        let mut buf = BytesMut::new();
        update.encode(&mut buf);
        assert_eq!(
            buf.as_ref(),
            b"r\x00\x00\x00\x00\x01\x6B\x37\x48\x00\x00\x00\x00\x01\x6B\x37\x00\
              \x00\x00\x00\x00\x01\x6B\x36\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00"
        );
        assert_eq!(buf.len(), StandbyStatusUpdate::LEN);
        assert_eq!(StandbyStatusUpdate::decode(&buf), Ok(update));
    }

    #[test]
    fn rejects_malformed_framing() {
        let cases: &[(&[u8], usize, &str)] = &[
            (
                b"",
                0,
                "invalid replication message at byte 0: empty message",
            ),
            (
                b"x",
                0,
                "invalid replication message (type 'x') at byte 0: unknown message type",
            ),
            (
                b"w\x00\x00",
                1,
                "invalid xlog data message (type 'w') at byte 1: \
                 unexpected end of data reading wal start: need 8 bytes, 2 left",
            ),
            (
                b"k\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x02",
                17,
                "invalid primary keepalive message (type 'k') at byte 17: \
                 invalid reply requested byte 0x02",
            ),
            (
                b"k\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x00\x00",
                18,
                "invalid primary keepalive message (type 'k') at byte 18: \
                 1 unexpected trailing bytes",
            ),
        ];
        for (bytes, offset, text) in cases {
            let err = ReplicationMessage::decode(&Bytes::copy_from_slice(bytes)).unwrap_err();
            assert_eq!(err.offset(), *offset);
            assert_eq!(err.to_string(), *text);
        }
    }
}
