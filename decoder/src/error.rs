//! The decoder's error type.
//!
//! Everything this crate decodes comes from the network, so every malformed input is a value, not
//! a panic. A [`DecodeError`] says which message was being read (its tag byte and name), the byte
//! offset inside that frame where reading stopped, what was wrong ([`DecodeErrorKind`]) and, when
//! the caller knows it, the LSN of the frame, so an operator can find the exact WAL record with
//! `pg_logical_slot_peek_binary_changes` or `pg_waldump`.
//!
//! Decode errors are *definite*: retrying the same bytes gives the same error. The engine stops
//! the stream before the slot advances past the frame.

use std::fmt;

use crate::lsn::Lsn;

/// A malformed or unexpected frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    message: &'static str,
    tag: Option<u8>,
    offset: usize,
    lsn: Option<Lsn>,
    kind: DecodeErrorKind,
}

/// What exactly was wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The frame has no bytes at all, not even a tag.
    #[error("empty message")]
    Empty,
    /// The tag byte names no message this decoder knows.
    #[error("unknown message type")]
    UnknownTag,
    /// The message exists, but not in the negotiated protocol version.
    #[error("message type not valid in protocol version {version}")]
    NotInVersion {
        /// The version the decoder was configured with.
        version: u32,
    },
    /// The frame ends before a field does.
    #[error("unexpected end of data reading {field}: need {needed} bytes, {available} left")]
    UnexpectedEnd {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// A length field is negative or larger than the rest of the frame.
    #[error("invalid {field} {value}: {available} bytes left")]
    InvalidLength {
        /// The length field being read.
        field: &'static str,
        /// The value on the wire.
        value: i64,
        /// Bytes left in the frame after the length.
        available: usize,
    },
    /// A NUL-terminated string has no NUL before the end of the frame.
    #[error("unterminated string reading {field}")]
    UnterminatedString {
        /// The string field being read.
        field: &'static str,
    },
    /// A string is not valid UTF-8.
    #[error("invalid UTF-8 in {field}")]
    InvalidUtf8 {
        /// The string field being read.
        field: &'static str,
    },
    /// A byte that must be one of a few values (a marker, a boolean, an enum) is not.
    #[error("invalid {field} byte 0x{value:02x}")]
    InvalidByte {
        /// The field being read.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// The message was fully read but bytes remain in the frame.
    #[error("{count} unexpected trailing bytes")]
    TrailingBytes {
        /// How many bytes remain.
        count: usize,
    },
    /// The message is well formed but not allowed here (e.g. a Stream Start inside a stream
    /// segment).
    #[error("unexpected message {context}")]
    UnexpectedMessage {
        /// Where it appeared.
        context: &'static str,
    },
}

impl DecodeError {
    /// An error at `offset` while reading the message named `message` with tag `tag`.
    pub(crate) fn new(
        message: &'static str,
        tag: Option<u8>,
        offset: usize,
        kind: DecodeErrorKind,
    ) -> Self {
        DecodeError {
            message,
            tag,
            offset,
            lsn: None,
            kind,
        }
    }

    /// Attaches the LSN of the frame (e.g. the `lsn` column of `pg_logical_slot_*_changes`, or
    /// the XLogData start position). An LSN already present is kept.
    #[must_use]
    pub fn with_lsn(mut self, lsn: Lsn) -> Self {
        self.lsn.get_or_insert(lsn);
        self
    }

    /// The human name of the message being decoded (`"insert"`, `"xlog data"`, ...).
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// The tag byte of the frame, if it had one.
    pub fn tag(&self) -> Option<u8> {
        self.tag
    }

    /// Byte offset in the frame (tag = 0) where decoding stopped.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The LSN of the frame, when known.
    pub fn lsn(&self) -> Option<Lsn> {
        self.lsn
    }

    /// What was wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} message", self.message)?;
        match self.tag {
            Some(t) if t.is_ascii_graphic() => write!(f, " (type '{}')", t as char)?,
            Some(t) => write!(f, " (type 0x{t:02x})")?,
            None => {}
        }
        write!(f, " at byte {}", self.offset)?;
        if let Some(lsn) = self.lsn {
            write!(f, " of frame at {lsn}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_message_tag_offset_and_lsn() {
        let e = DecodeError::new(
            "insert",
            Some(b'I'),
            12,
            DecodeErrorKind::UnexpectedEnd {
                field: "column length",
                needed: 4,
                available: 2,
            },
        );
        assert_eq!(
            e.to_string(),
            "invalid insert message (type 'I') at byte 12: \
             unexpected end of data reading column length: need 4 bytes, 2 left"
        );
        let e = e.with_lsn(Lsn(0x16B3748)).with_lsn(Lsn(1));
        assert_eq!(e.lsn(), Some(Lsn(0x16B3748)));
        assert_eq!(
            e.to_string(),
            "invalid insert message (type 'I') at byte 12 of frame at 0/16B3748: \
             unexpected end of data reading column length: need 4 bytes, 2 left"
        );
        let e = DecodeError::new("pgoutput", Some(0), 0, DecodeErrorKind::UnknownTag);
        assert_eq!(
            e.to_string(),
            "invalid pgoutput message (type 0x00) at byte 0: unknown message type"
        );
    }
}
