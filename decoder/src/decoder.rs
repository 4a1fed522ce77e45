//! The stateful decoder for one replication stream.
//!
//! Decoding a pgoutput message needs one bit of state the bytes do not carry: whether it lies
//! between a Stream Start and a Stream Stop (then several messages carry an extra xid, see
//! [`crate::pgoutput`]). [`Decoder`] owns that bit and the negotiated protocol version, updates
//! the bit as Stream Start and Stream Stop go by, and rejects frames that break the segment
//! structure PostgreSQL guarantees (a Stream Start inside a segment, a Stream Stop outside one, a
//! transaction boundary such as Commit or Stream Commit inside one). A frame that fails to
//! decode leaves the state unchanged.
//!
//! One `Decoder` per replication connection: after a reconnect, use a new one (or
//! [`Decoder::reset`]), since `START_REPLICATION` never resumes in the middle of a segment.
//!
//! ```text
//!   CopyData payload ──► ReplicationMessage::decode ──► XLogData.data ──► decode_message ──► Message
//!        (w / k)              (stream.rs)                  (one frame)      (pgoutput.rs)
//! ```

use bytes::Bytes;

use crate::error::{DecodeError, DecodeErrorKind};
use crate::lsn::Lsn;
use crate::message::Message;
use crate::pgoutput::{DecodeContext, ProtocolVersion, decode_in, decode_message};
use crate::stream::{PrimaryKeepalive, ReplicationMessage, XLOG_DATA_HEADER_LEN, peek_xlog_data};
use crate::time::PgTimestamp;

/// Decodes the messages of one replication stream in order.
#[derive(Debug, Clone)]
pub struct Decoder {
    ctx: DecodeContext,
}

/// What one CopyData payload of a logical replication stream carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// An XLogData frame and the pgoutput message in it.
    Message {
        /// Start of the message in the WAL (the XLogData start position).
        wal_start: Lsn,
        /// Current end of WAL on the server.
        wal_end: Lsn,
        /// Server clock at send time.
        send_time: PgTimestamp,
        /// The decoded message.
        message: Message,
    },
    /// A primary keepalive.
    Keepalive(PrimaryKeepalive),
}

impl Decoder {
    /// A decoder for a stream started with `proto_version` = `version`.
    pub fn new(version: ProtocolVersion) -> Self {
        Decoder {
            ctx: DecodeContext::new(version),
        }
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.ctx.version
    }

    /// Whether the next message is inside a stream segment.
    pub fn in_stream(&self) -> bool {
        self.ctx.in_stream
    }

    /// The context the next frame will be decoded with.
    pub fn context(&self) -> DecodeContext {
        self.ctx
    }

    /// Forgets any open stream segment (for a new `START_REPLICATION`).
    pub fn reset(&mut self) {
        self.ctx.in_stream = false;
    }

    /// Decodes the next pgoutput message (one XLogData payload or one `data` value of
    /// `pg_logical_slot_peek_binary_changes`).
    pub fn decode(&mut self, frame: &Bytes) -> Result<Message, DecodeError> {
        let message = decode_message(frame, self.ctx)?;
        self.advance(&message)?;
        Ok(message)
    }

    /// [`Decoder::decode`] that attaches `lsn` to any error.
    pub fn decode_at(&mut self, frame: &Bytes, lsn: Lsn) -> Result<Message, DecodeError> {
        self.decode(frame).map_err(|e| e.with_lsn(lsn))
    }

    /// Decodes one CopyData payload of a logical replication stream: framing, then the
    /// pgoutput message in an XLogData. Errors inside the message carry the XLogData start LSN
    /// and an offset relative to the message (the payload offset minus
    /// [`crate::stream::XLOG_DATA_HEADER_LEN`]).
    pub fn decode_copy_data(&mut self, payload: &Bytes) -> Result<StreamEvent, DecodeError> {
        // Fast path: decode the message in place, so its values are sliced straight from the
        // CopyData buffer (one reference count per tuple instead of two).
        if let Some(header) = peek_xlog_data(payload) {
            let (wal_start, wal_end, send_time) = header?;
            let message = decode_in(payload, XLOG_DATA_HEADER_LEN, self.ctx)
                .map_err(|e| e.with_lsn(wal_start))?;
            self.advance(&message).map_err(|e| e.with_lsn(wal_start))?;
            return Ok(StreamEvent::Message {
                wal_start,
                wal_end,
                send_time,
                message,
            });
        }
        match ReplicationMessage::decode(payload)? {
            ReplicationMessage::XLogData(w) => {
                let message = self.decode_at(&w.data, w.wal_start)?;
                Ok(StreamEvent::Message {
                    wal_start: w.wal_start,
                    wal_end: w.wal_end,
                    send_time: w.send_time,
                    message,
                })
            }
            ReplicationMessage::PrimaryKeepalive(k) => Ok(StreamEvent::Keepalive(k)),
        }
    }

    /// Checks `message` against the segment state and moves the state past it.
    fn advance(&mut self, message: &Message) -> Result<(), DecodeError> {
        let in_stream = self.ctx.in_stream;
        let misplaced = match message {
            Message::StreamStart(_) => {
                self.ctx.in_stream = true;
                in_stream
            }
            Message::StreamStop => {
                self.ctx.in_stream = false;
                !in_stream
            }
            Message::Begin(_)
            | Message::Commit(_)
            | Message::StreamCommit(_)
            | Message::StreamAbort(_)
            | Message::BeginPrepare(_)
            | Message::Prepare(_)
            | Message::CommitPrepared(_)
            | Message::RollbackPrepared(_)
            | Message::StreamPrepare(_) => in_stream,
            _ => false,
        };
        if misplaced {
            self.ctx.in_stream = in_stream;
            let context = if in_stream {
                "inside a stream segment"
            } else {
                "outside a stream segment"
            };
            let tag = message.tag();
            return Err(DecodeError::new(
                Message::name_of(tag),
                Some(tag),
                0,
                DecodeErrorKind::UnexpectedMessage { context },
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Insert, StreamStart};
    use crate::stream::XLogData;
    use crate::tuple::{ColumnRef, TupleData};
    use bytes::BytesMut;

    fn bytes(m: &Message) -> Bytes {
        m.to_bytes().unwrap()
    }

    fn insert(xid: Option<u32>) -> Message {
        Message::Insert(Insert {
            xid,
            relation_id: 16384,
            new: TupleData::from_values([ColumnRef::Text(b"1")]).unwrap(),
        })
    }

    fn start() -> Message {
        Message::StreamStart(StreamStart {
            xid: 9,
            first_segment: true,
        })
    }

    #[test]
    fn tracks_stream_segments() {
        let mut d = Decoder::new(ProtocolVersion::V2);
        assert_eq!(d.decode(&bytes(&insert(None))).unwrap(), insert(None));
        assert_eq!(d.decode(&bytes(&start())).unwrap(), start());
        assert!(d.in_stream());
        // Inside the segment the xid is read.
        assert_eq!(d.decode(&bytes(&insert(Some(9)))).unwrap(), insert(Some(9)));
        // The same bytes without the xid are now misread and rejected (truncated tuple).
        let err = d.decode(&bytes(&insert(None))).unwrap_err();
        assert_eq!(err.message(), "insert");
        assert!(d.in_stream(), "a failed frame leaves the state unchanged");
        assert_eq!(
            d.decode(&Bytes::from_static(b"E")).unwrap(),
            Message::StreamStop
        );
        assert!(!d.in_stream());
    }

    #[test]
    fn rejects_misplaced_segment_messages() {
        let mut d = Decoder::new(ProtocolVersion::V4);
        let err = d.decode(&Bytes::from_static(b"E")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid stream stop message (type 'E') at byte 0: \
             unexpected message outside a stream segment"
        );
        assert!(!d.in_stream());
        d.decode(&bytes(&start())).unwrap();
        let err = d.decode(&bytes(&start())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid stream start message (type 'S') at byte 0: \
             unexpected message inside a stream segment"
        );
        assert!(d.in_stream());
        let commit =
            Bytes::from_static(b"C\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x03");
        let err = d.decode_at(&commit, Lsn(0x16B3748)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid commit message (type 'C') at byte 0 of frame at 0/16B3748: \
             unexpected message inside a stream segment"
        );
        assert!(d.in_stream());
        d.reset();
        assert!(d.decode(&commit).is_ok());
    }

    #[test]
    fn copy_data_path_attaches_the_wal_start_to_errors() {
        let mut d = Decoder::new(ProtocolVersion::V1);
        let mut payload = BytesMut::new();
        ReplicationMessage::XLogData(XLogData {
            wal_start: Lsn(0x16B3748),
            wal_end: Lsn(0x16B3800),
            send_time: PgTimestamp(5),
            data: Bytes::from_static(b"I\0\0\x40\0N\0\x01t\0\0\0\x09ab"),
        })
        .encode(&mut payload);
        let err = d.decode_copy_data(&payload.freeze()).unwrap_err();
        assert_eq!(err.lsn(), Some(Lsn(0x16B3748)));
        assert_eq!(err.offset(), 9);
        assert_eq!(
            err.to_string(),
            "invalid insert message (type 'I') at byte 9 of frame at 0/16B3748: \
             invalid column length 9: 2 bytes left"
        );

        // A header without a message, and a truncated header.
        let mut empty = BytesMut::new();
        ReplicationMessage::XLogData(XLogData {
            wal_start: Lsn(0x10),
            wal_end: Lsn(0x20),
            send_time: PgTimestamp(5),
            data: Bytes::new(),
        })
        .encode(&mut empty);
        let err = d.decode_copy_data(&empty.freeze()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid pgoutput message at byte 0 of frame at 0/10: empty message"
        );
        let err = d
            .decode_copy_data(&Bytes::from_static(b"w\0\0\0\0\0\0\0\x10\0\0"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid xlog data message (type 'w') at byte 9: \
             unexpected end of data reading wal end: need 8 bytes, 2 left"
        );

        let keepalive = Bytes::from_static(b"k\0\0\0\0\0\0\0\x07\0\0\0\0\0\0\0\x08\x00");
        assert_eq!(
            d.decode_copy_data(&keepalive).unwrap(),
            StreamEvent::Keepalive(PrimaryKeepalive {
                wal_end: Lsn(7),
                send_time: PgTimestamp(8),
                reply_requested: false,
            })
        );
    }
}
