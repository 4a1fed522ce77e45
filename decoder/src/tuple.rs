//! Row images (`TupleData`) without per-column allocation.
//!
//! A pgoutput tuple is an `Int16` column count followed by one entry per column: `n` (NULL),
//! `u` (unchanged TOASTed value, only in update new tuples), `t` + `Int32` length + text bytes,
//! or `b` + `Int32` length + binary (send-format) bytes.
//!
//! Decoding walks the columns once to check every marker and length, then keeps the tuple as a
//! single zero-copy [`Bytes`] slice of the frame plus its column count. Nothing is allocated per
//! row or per column: columns are read back with [`TupleData::iter`] (borrowed [`ColumnRef`]s,
//! no reference counting at all) or [`TupleData::values`] (owned [`ColumnValue`]s whose bytes
//! are `Bytes` slices of the same frame). The second walk is cheap because the first one proved
//! the layout; it still uses checked slicing, so a logic error could end an iteration early but
//! never panic. The sink can also copy [`TupleData::wire_bytes`] whole: a binary-mode field is
//! already a binary COPY field (length + bytes) apart from the marker byte.
//!
//! The alternative, a `Vec<ColumnValue>` per tuple, costs one allocation plus one atomic
//! reference-count increment and decrement per column; on a 10-column insert that is most of
//! the decode time (see `bench/src/bin/decode_bench.rs`).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::encode::EncodeError;
use crate::error::{DecodeError, DecodeErrorKind};
use crate::reader::Reader;

/// One column of a tuple, owning its bytes (a zero-copy slice of the frame).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnValue {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value that the server did not send (`u`); the target must keep the
    /// value it already has.
    UnchangedToast,
    /// A value in the type's text output format (`t`).
    Text(Bytes),
    /// A value in the type's binary send format (`b`), as in binary COPY.
    Binary(Bytes),
}

/// One column of a tuple, borrowing its bytes from the [`TupleData`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRef<'a> {
    /// SQL NULL (`n`).
    Null,
    /// An unchanged TOASTed value that the server did not send (`u`).
    UnchangedToast,
    /// A value in text format (`t`).
    Text(&'a [u8]),
    /// A value in binary send format (`b`).
    Binary(&'a [u8]),
}

impl<'a> ColumnRef<'a> {
    /// The value's bytes, or `None` for NULL and unchanged TOAST.
    #[inline]
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            ColumnRef::Text(b) | ColumnRef::Binary(b) => Some(b),
            ColumnRef::Null | ColumnRef::UnchangedToast => None,
        }
    }

    /// Whether this is SQL NULL.
    #[inline]
    pub fn is_null(self) -> bool {
        matches!(self, ColumnRef::Null)
    }

    /// Whether this is an unchanged TOAST marker.
    #[inline]
    pub fn is_unchanged_toast(self) -> bool {
        matches!(self, ColumnRef::UnchangedToast)
    }
}

impl fmt::Debug for ColumnRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, bytes) = match self {
            ColumnRef::Null => return f.write_str("Null"),
            ColumnRef::UnchangedToast => return f.write_str("UnchangedToast"),
            ColumnRef::Text(b) => ("Text", b),
            ColumnRef::Binary(b) => ("Binary", b),
        };
        write!(f, "{name}(b\"")?;
        for &byte in bytes.iter() {
            write!(f, "{}", std::ascii::escape_default(byte))?;
        }
        f.write_str("\")")
    }
}

impl ColumnValue {
    /// Borrows this value as a [`ColumnRef`].
    #[inline]
    pub fn as_ref(&self) -> ColumnRef<'_> {
        match self {
            ColumnValue::Null => ColumnRef::Null,
            ColumnValue::UnchangedToast => ColumnRef::UnchangedToast,
            ColumnValue::Text(b) => ColumnRef::Text(b),
            ColumnValue::Binary(b) => ColumnRef::Binary(b),
        }
    }
}

/// A validated row image: the wire bytes of the tuple (column count and columns) as one slice of
/// the frame.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TupleData {
    /// `Int16` count followed by the columns; validated when built.
    wire: Bytes,
    len: u16,
}

impl TupleData {
    /// Number of columns.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the tuple has no columns.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tuple exactly as on the wire: `Int16` column count, then each column's marker,
    /// length and bytes.
    #[inline]
    pub fn wire_bytes(&self) -> &Bytes {
        &self.wire
    }

    /// Iterates over the columns, borrowing their bytes.
    #[inline]
    pub fn iter(&self) -> Columns<'_> {
        Columns {
            wire: &self.wire,
            pos: 2,
            left: self.len,
        }
    }

    /// Iterates over the columns as owned values (zero-copy `Bytes` slices of the frame).
    pub fn values(&self) -> impl ExactSizeIterator<Item = ColumnValue> + '_ {
        self.iter().map(|c| match c {
            ColumnRef::Null => ColumnValue::Null,
            ColumnRef::UnchangedToast => ColumnValue::UnchangedToast,
            ColumnRef::Text(b) => ColumnValue::Text(self.wire.slice_ref(b)),
            ColumnRef::Binary(b) => ColumnValue::Binary(self.wire.slice_ref(b)),
        })
    }

    /// The columns as a vector of owned values.
    pub fn to_values(&self) -> Vec<ColumnValue> {
        self.values().collect()
    }

    /// Column `index` (0-based), found by walking the tuple.
    #[inline]
    pub fn get(&self, index: usize) -> Option<ColumnRef<'_>> {
        self.iter().nth(index)
    }

    /// Builds a tuple from values (for tests, benchmarks and the fuzz corpus).
    pub fn from_values<'v, I>(values: I) -> Result<TupleData, EncodeError>
    where
        I: IntoIterator<Item = ColumnRef<'v>>,
    {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u16(0);
        let mut count: usize = 0;
        for value in values {
            count += 1;
            match value {
                ColumnRef::Null => buf.put_u8(b'n'),
                ColumnRef::UnchangedToast => buf.put_u8(b'u'),
                ColumnRef::Text(b) | ColumnRef::Binary(b) => {
                    let len = i32::try_from(b.len()).map_err(|_| EncodeError::TooLong {
                        field: "column value",
                        len: b.len(),
                    })?;
                    buf.put_u8(if matches!(value, ColumnRef::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    buf.put_i32(len);
                    buf.put_slice(b);
                }
            }
        }
        let len = u16::try_from(count).map_err(|_| EncodeError::TooMany {
            field: "tuple columns",
            count,
        })?;
        buf[..2].copy_from_slice(&len.to_be_bytes());
        Ok(TupleData {
            wire: buf.freeze(),
            len,
        })
    }

    /// Reads a tuple starting at the reader's position (the `Int16` count) and returns it as a
    /// slice of `buf`; the reader reads `buf[base..]`.
    #[inline]
    pub(crate) fn parse(
        r: &mut Reader<'_>,
        buf: &Bytes,
        base: usize,
    ) -> Result<TupleData, DecodeError> {
        let start = r.pos();
        let len = r.u16("tuple column count")?;
        for _ in 0..len {
            match r.u8("column type")? {
                b'n' | b'u' => {}
                b't' | b'b' => {
                    let n = r.length("column length")?;
                    r.skip(n, "column value")?;
                }
                value => {
                    return Err(r.error_at(
                        r.pos() - 1,
                        DecodeErrorKind::InvalidByte {
                            field: "column type",
                            value,
                        },
                    ));
                }
            }
        }
        Ok(TupleData {
            wire: buf.slice(base + start..base + r.pos()),
            len,
        })
    }
}

impl fmt::Debug for TupleData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a TupleData {
    type Item = ColumnRef<'a>;
    type IntoIter = Columns<'a>;

    fn into_iter(self) -> Columns<'a> {
        self.iter()
    }
}

/// Iterator over the columns of a [`TupleData`].
#[derive(Clone)]
pub struct Columns<'a> {
    wire: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for Columns<'a> {
    type Item = ColumnRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ColumnRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let marker = *self.wire.get(self.pos)?;
        self.pos += 1;
        let value = match marker {
            b'n' => return Some(ColumnRef::Null),
            b'u' => return Some(ColumnRef::UnchangedToast),
            _ => {
                let len_bytes = self.wire.get(self.pos..)?.first_chunk::<4>()?;
                let len = usize::try_from(i32::from_be_bytes(*len_bytes)).ok()?;
                let start = self.pos + 4;
                let value = self.wire.get(start..start.checked_add(len)?)?;
                self.pos = start + len;
                value
            }
        };
        Some(if marker == b't' {
            ColumnRef::Text(value)
        } else {
            ColumnRef::Binary(value)
        })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for Columns<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<TupleData, DecodeError> {
        let frame = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&frame, 0, "test");
        let t = TupleData::parse(&mut r, &frame, 0)?;
        r.finish()?;
        Ok(t)
    }

    #[test]
    fn parses_every_column_kind() {
        let wire = b"\x00\x04nu\x74\x00\x00\x00\x03abc\x62\x00\x00\x00\x02\x01\x02";
        let t = parse(wire).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            vec![
                ColumnRef::Null,
                ColumnRef::UnchangedToast,
                ColumnRef::Text(b"abc"),
                ColumnRef::Binary(&[1, 2]),
            ]
        );
        assert_eq!(
            t.to_values(),
            vec![
                ColumnValue::Null,
                ColumnValue::UnchangedToast,
                ColumnValue::Text(Bytes::from_static(b"abc")),
                ColumnValue::Binary(Bytes::from_static(&[1, 2])),
            ]
        );
        assert_eq!(t.get(2), Some(ColumnRef::Text(b"abc")));
        assert_eq!(t.get(4), None);
        assert_eq!(t.wire_bytes().as_ref(), wire);
        assert_eq!(
            format!("{t:?}"),
            r#"[Null, UnchangedToast, Text(b"abc"), Binary(b"\x01\x02")]"#
        );
        let rebuilt = TupleData::from_values(t.to_values().iter().map(ColumnValue::as_ref));
        assert_eq!(rebuilt.unwrap(), t);
    }

    #[test]
    fn values_are_zero_copy_slices() {
        let frame = Bytes::from_static(b"\x00\x01t\x00\x00\x00\x02hi");
        let mut r = Reader::new(&frame, 0, "test");
        let t = TupleData::parse(&mut r, &frame, 0).unwrap();
        let ColumnValue::Text(v) = t.values().next().unwrap() else {
            panic!("expected text")
        };
        assert_eq!(v.as_ptr(), frame[7..].as_ptr());
    }

    #[test]
    fn rejects_malformed_tuples() {
        let cases: &[(&[u8], usize, &str)] = &[
            (
                b"",
                0,
                "unexpected end of data reading tuple column count: need 2 bytes, 0 left",
            ),
            (
                b"\x00\x02n",
                3,
                "unexpected end of data reading column type: need 1 bytes, 0 left",
            ),
            (b"\x00\x01x", 2, "invalid column type byte 0x78"),
            (
                b"\x00\x01t\x00\x00",
                3,
                "unexpected end of data reading column length: need 4 bytes, 2 left",
            ),
            (
                b"\x00\x01t\xff\xff\xff\xffab",
                3,
                "invalid column length -1: 2 bytes left",
            ),
            (
                b"\x00\x01b\x00\x00\x00\x03ab",
                3,
                "invalid column length 3: 2 bytes left",
            ),
            (b"\x00\x01nn", 3, "1 unexpected trailing bytes"),
            // 65535 columns announced, 3 bytes present: fails at the 4th column, no allocation.
            (
                b"\xff\xffnnn",
                5,
                "unexpected end of data reading column type: need 1 bytes, 0 left",
            ),
        ];
        for (bytes, offset, kind) in cases {
            let err = parse(bytes).unwrap_err();
            assert_eq!(err.offset(), *offset, "{bytes:?}");
            assert_eq!(err.kind().to_string(), *kind, "{bytes:?}");
        }
    }

    #[test]
    fn empty_tuple() {
        let t = parse(b"\x00\x00").unwrap();
        assert!(t.is_empty());
        assert_eq!(t.iter().next(), None);
    }
}
