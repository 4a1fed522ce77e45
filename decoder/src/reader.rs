//! Bounds-checked big-endian reading of one frame.
//!
//! All parsing goes through [`Reader`], which checks every length against the bytes left before
//! it slices, so no input can make the decoder panic or allocate more than the frame holds. Each
//! check is one comparison on a `usize`; the fixed-width reads compile to a load and a byte swap.
//! Errors carry the current offset and the message being read.

use crate::error::{DecodeError, DecodeErrorKind};
use crate::lsn::Lsn;
use crate::time::PgTimestamp;

/// A cursor over one frame (tag byte at offset 0).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
    tag: Option<u8>,
}

impl<'a> Reader<'a> {
    /// A reader positioned at `pos` (usually 1, just after the tag).
    #[inline]
    pub(crate) fn new(buf: &'a [u8], pos: usize, message: &'static str) -> Self {
        Reader {
            buf,
            pos,
            message,
            tag: buf.first().copied(),
        }
    }

    /// The current offset in the frame.
    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// An error of `kind` at the current offset.
    #[cold]
    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.message, self.tag, self.pos, kind)
    }

    /// An error of `kind` at `offset`.
    #[cold]
    pub(crate) fn error_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.message, self.tag, offset, kind)
    }

    #[cold]
    fn short(&self, field: &'static str, needed: usize) -> DecodeError {
        self.error(DecodeErrorKind::UnexpectedEnd {
            field,
            needed,
            available: self.remaining(),
        })
    }

    /// Reads `N` bytes.
    #[inline]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        match self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
        {
            Some(a) => {
                self.pos += N;
                Ok(*a)
            }
            None => Err(self.short(field, N)),
        }
    }

    /// Reads a `Byte1` / `Int8`.
    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.short(field, 1)),
        }
    }

    /// Reads an `Int16` as unsigned (column counts).
    #[inline]
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_be_bytes)
    }

    /// Reads an `Int32` as unsigned (OIDs and xids).
    #[inline]
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    /// Reads a signed `Int32` (lengths, type modifiers).
    #[inline]
    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    /// Reads an `Int64` LSN.
    #[inline]
    pub(crate) fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        self.array(field).map(|a| Lsn(u64::from_be_bytes(a)))
    }

    /// Reads an `Int64` timestamp.
    #[inline]
    pub(crate) fn timestamp(&mut self, field: &'static str) -> Result<PgTimestamp, DecodeError> {
        self.array(field)
            .map(|a| PgTimestamp(i64::from_be_bytes(a)))
    }

    /// Reads a boolean byte, which must be exactly 0 or 1.
    #[inline]
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => {
                Err(self.error_at(self.pos - 1, DecodeErrorKind::InvalidByte { field, value }))
            }
        }
    }

    /// Reads an `Int32` length that must be non-negative and fit in the rest of the frame.
    #[inline]
    pub(crate) fn length(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let len = self.i32(field)?;
        match usize::try_from(len) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(self.error_at(
                at,
                DecodeErrorKind::InvalidLength {
                    field,
                    value: i64::from(len),
                    available: self.remaining(),
                },
            )),
        }
    }

    /// Skips `n` bytes (already checked against [`Reader::remaining`] by the caller, checked
    /// again here).
    #[inline]
    pub(crate) fn skip(&mut self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if n <= self.remaining() {
            self.pos += n;
            Ok(())
        } else {
            Err(self.short(field, n))
        }
    }

    /// Reads a NUL-terminated string as UTF-8 (without the NUL).
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error(DecodeErrorKind::UnterminatedString { field }));
        };
        let bytes = rest.get(..nul).unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                self.pos = start + nul + 1;
                Ok(s.to_owned())
            }
            Err(e) => Err(self.error_at(
                start + e.valid_up_to(),
                DecodeErrorKind::InvalidUtf8 { field },
            )),
        }
    }

    /// Fails unless every byte of the frame has been read.
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.error(DecodeErrorKind::TrailingBytes { count })),
        }
    }
}
