//! Row images in the two shapes the engine produces, read without decoding values.
//!
//! * [`Row::Tuple`]: a pgoutput tuple ([`TupleData`]) from the replication stream, in binary
//!   mode (`b` columns: a type's send format, exactly a binary COPY field) or text mode (`t`
//!   columns: a type's output format), with `n` for NULL and `u` for an unchanged TOASTed value.
//! * [`Row::Copy`]: one tuple of a binary COPY stream (`COPY ... TO STDOUT (FORMAT binary)`, the
//!   snapshot readers' output): `Int16` field count, then per field an `Int32` length (`-1` for
//!   NULL) and the bytes. [`split_binary_copy`] cuts a whole stream into such tuples, each a
//!   zero-copy slice of the input.
//!
//! Both read back as [`ColumnRef`]s, so everything downstream (key extraction, merging, COPY
//! encoding) handles them alike, and a binary field is always the same bytes in both.

use bytes::Bytes;
use pgwarp_decoder::{ColumnRef, ColumnValue, TupleData};

use crate::error::SinkError;

/// The 11-byte signature that opens a binary COPY stream.
pub const BINARY_COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// One row image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A pgoutput tuple (binary or text columns).
    Tuple(TupleData),
    /// One binary COPY tuple.
    Copy(CopyTuple),
}

/// How a row's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RowFormat {
    /// Binary send format.
    Binary,
    /// Text output format.
    Text,
}

impl Row {
    /// Number of columns.
    pub fn len(&self) -> usize {
        match self {
            Row::Tuple(t) => t.len(),
            Row::Copy(c) => c.len(),
        }
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The columns, borrowing their bytes.
    pub fn columns(&self) -> RowColumns<'_> {
        match self {
            Row::Tuple(t) => RowColumns::Tuple(t.iter()),
            Row::Copy(c) => RowColumns::Copy(c.fields()),
        }
    }

    /// Whether any column is an unchanged TOAST marker.
    pub(crate) fn has_unchanged(&self) -> bool {
        match self {
            Row::Tuple(t) => t.iter().any(ColumnRef::is_unchanged_toast),
            Row::Copy(_) => false,
        }
    }

    /// The format of the row's values; `None` when every column is NULL or unchanged. A row
    /// that mixes text and binary values is an error: COPY takes one format per statement.
    pub(crate) fn format(&self, table: &str) -> Result<Option<RowFormat>, SinkError> {
        let Row::Tuple(t) = self else {
            return Ok(Some(RowFormat::Binary));
        };
        let mut format = None;
        for c in t.iter() {
            let f = match c {
                ColumnRef::Text(_) => RowFormat::Text,
                ColumnRef::Binary(_) => RowFormat::Binary,
                ColumnRef::Null | ColumnRef::UnchangedToast => continue,
            };
            match format {
                None => format = Some(f),
                Some(g) if g != f => {
                    return Err(SinkError::InvalidRow {
                        table: table.to_owned(),
                        reason: "row mixes text and binary column values".into(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(format)
    }

    /// Column `index` as an owned value (a zero-copy slice).
    #[cfg(test)]
    pub(crate) fn value(&self, index: usize) -> Option<ColumnValue> {
        self.columns().nth(index).map(|c| self.own(c))
    }

    /// The columns as owned values (zero-copy slices).
    pub(crate) fn values(&self) -> impl Iterator<Item = ColumnValue> + '_ {
        self.columns().map(|c| self.own(c))
    }

    /// Turns a column borrowed from this row into an owned zero-copy slice of it.
    pub(crate) fn own(&self, c: ColumnRef<'_>) -> ColumnValue {
        let bytes = match self {
            Row::Tuple(t) => t.wire_bytes(),
            Row::Copy(c) => &c.bytes,
        };
        // `slice_ref` panics on a slice from elsewhere; callers pass this row's own columns,
        // but copy rather than panic if one ever does not.
        let own = |b: &[u8]| {
            let (start, outer) = (b.as_ptr() as usize, bytes.as_ptr() as usize);
            if start >= outer && start + b.len() <= outer + bytes.len() {
                bytes.slice_ref(b)
            } else {
                Bytes::copy_from_slice(b)
            }
        };
        match c {
            ColumnRef::Null => ColumnValue::Null,
            ColumnRef::UnchangedToast => ColumnValue::UnchangedToast,
            ColumnRef::Text(b) => ColumnValue::Text(own(b)),
            ColumnRef::Binary(b) => ColumnValue::Binary(own(b)),
        }
    }
}

/// Iterator over a [`Row`]'s columns.
#[derive(Clone)]
pub enum RowColumns<'a> {
    /// Columns of a pgoutput tuple.
    Tuple(pgwarp_decoder::Columns<'a>),
    /// Fields of a binary COPY tuple.
    Copy(CopyFields<'a>),
}

impl<'a> Iterator for RowColumns<'a> {
    type Item = ColumnRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ColumnRef<'a>> {
        match self {
            RowColumns::Tuple(c) => c.next(),
            RowColumns::Copy(c) => c.next(),
        }
    }
}

/// One validated binary COPY tuple: `Int16` field count, then the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTuple {
    bytes: Bytes,
    len: u16,
}

impl CopyTuple {
    /// Validates `bytes` as exactly one binary COPY tuple.
    pub fn new(bytes: Bytes) -> Result<CopyTuple, SinkError> {
        let (tuple, end) = Self::parse_at(&bytes, 0)?.ok_or(SinkError::InvalidCopyData {
            offset: 0,
            reason: "end-of-data marker where a tuple was expected",
        })?;
        if end != bytes.len() {
            return Err(SinkError::InvalidCopyData {
                offset: end,
                reason: "trailing bytes after the tuple",
            });
        }
        Ok(tuple)
    }

    /// Parses the tuple starting at `start` of `data`: `Ok(None)` at the end-of-data marker
    /// (field count `-1`), else the tuple (a slice of `data`) and the offset after it.
    pub fn parse_at(data: &Bytes, start: usize) -> Result<Option<(CopyTuple, usize)>, SinkError> {
        let bad = |offset, reason| SinkError::InvalidCopyData { offset, reason };
        let count = data
            .get(start..start + 2)
            .ok_or(bad(start, "truncated field count"))?;
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            return Ok(None);
        }
        let len = u16::try_from(count).map_err(|_| bad(start, "negative field count"))?;
        let mut pos = start + 2;
        for _ in 0..len {
            let l = data
                .get(pos..pos + 4)
                .ok_or(bad(pos, "truncated field length"))?;
            let l = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
            pos += 4;
            if l == -1 {
                continue;
            }
            let l = usize::try_from(l).map_err(|_| bad(pos - 4, "negative field length"))?;
            if data.len() - pos < l {
                return Err(bad(pos - 4, "field length beyond the end of the data"));
            }
            pos += l;
        }
        Ok(Some((
            CopyTuple {
                bytes: data.slice(start..pos),
                len,
            },
            pos,
        )))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the tuple has no fields.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tuple's bytes (count and fields), exactly as in the COPY stream.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The fields, as [`ColumnRef::Binary`] or [`ColumnRef::Null`].
    pub fn fields(&self) -> CopyFields<'_> {
        CopyFields {
            data: &self.bytes,
            pos: 2,
            left: self.len,
        }
    }
}

/// Iterator over the fields of a [`CopyTuple`].
#[derive(Clone)]
pub struct CopyFields<'a> {
    data: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for CopyFields<'a> {
    type Item = ColumnRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ColumnRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = i32::from_be_bytes(*self.data.get(self.pos..)?.first_chunk::<4>()?);
        self.pos += 4;
        if len < 0 {
            return Some(ColumnRef::Null);
        }
        let end = self.pos.checked_add(usize::try_from(len).ok()?)?;
        let value = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(ColumnRef::Binary(value))
    }
}

/// Splits a whole binary COPY stream (signature, flags, header extension, tuples, trailer) into
/// its tuples, each a zero-copy slice of `stream`.
pub fn split_binary_copy(stream: &Bytes) -> Result<Vec<CopyTuple>, SinkError> {
    let bad = |offset, reason| SinkError::InvalidCopyData { offset, reason };
    if stream.get(..11) != Some(&BINARY_COPY_SIGNATURE[..]) {
        return Err(bad(0, "missing binary copy signature"));
    }
    let header = stream.get(11..19).ok_or(bad(11, "truncated header"))?;
    let flags = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if flags & 0xFFFF_0000 != 0 {
        return Err(bad(11, "unknown critical header flags"));
    }
    let ext = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let mut pos = 19usize
        .checked_add(usize::try_from(ext).map_err(|_| bad(15, "header extension too long"))?)
        .ok_or(bad(15, "header extension too long"))?;
    if pos > stream.len() {
        return Err(bad(15, "header extension beyond the end of the data"));
    }
    let mut tuples = Vec::new();
    while let Some((tuple, next)) = CopyTuple::parse_at(stream, pos)? {
        tuples.push(tuple);
        pos = next;
    }
    if pos + 2 != stream.len() {
        return Err(bad(pos + 2, "data after the end-of-data marker"));
    }
    Ok(tuples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(tuples: &[&[u8]]) -> Bytes {
        let mut v = BINARY_COPY_SIGNATURE.to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for t in tuples {
            v.extend_from_slice(t);
        }
        v.extend_from_slice(&[0xff, 0xff]);
        Bytes::from(v)
    }

    #[test]
    fn splits_a_stream_into_zero_copy_tuples() {
        let t1: &[u8] = b"\x00\x02\x00\x00\x00\x04\x00\x00\x00\x07\xff\xff\xff\xff";
        let t2: &[u8] = b"\x00\x01\x00\x00\x00\x02hi";
        let s = stream(&[t1, t2]);
        let tuples = split_binary_copy(&s).unwrap();
        assert_eq!(tuples.len(), 2);
        assert_eq!(tuples[0].as_bytes().as_ref(), t1);
        assert_eq!(
            tuples[0].fields().collect::<Vec<_>>(),
            vec![ColumnRef::Binary(&[0, 0, 0, 7]), ColumnRef::Null]
        );
        assert_eq!(tuples[1].as_bytes().as_ptr(), s[19 + t1.len()..].as_ptr());
        let row = Row::Copy(tuples[1].clone());
        assert_eq!(
            row.value(0),
            Some(ColumnValue::Binary(Bytes::from_static(b"hi")))
        );
        assert_eq!(row.format("t").unwrap(), Some(RowFormat::Binary));
    }

    #[test]
    fn rejects_malformed_streams() {
        let cases: &[(&[u8], &str)] = &[
            (b"PGCOPY\n", "missing binary copy signature"),
            (
                b"\x00\x01\x00\x00\x00\x05ab",
                "field length beyond the end of the data",
            ),
            (b"\x00\x01\xff\xff\xff\xfe", "negative field length"),
            (b"\x80\x00", "negative field count"),
            (b"\x00\x01\x00\x00", "truncated field length"),
        ];
        for (body, reason) in cases {
            let s = if body.starts_with(b"PGCOPY") {
                Bytes::copy_from_slice(body)
            } else {
                let mut v = BINARY_COPY_SIGNATURE.to_vec();
                v.extend_from_slice(&[0; 8]);
                v.extend_from_slice(body);
                Bytes::from(v)
            };
            match split_binary_copy(&s) {
                Err(SinkError::InvalidCopyData { reason: r, .. }) => assert_eq!(r, *reason),
                other => panic!("{body:?}: {other:?}"),
            }
        }
        let mut trailing = stream(&[]).to_vec();
        trailing.push(0);
        assert!(split_binary_copy(&Bytes::from(trailing)).is_err());
        assert!(CopyTuple::new(Bytes::from_static(b"\x00\x00\x00")).is_err());
        assert!(
            CopyTuple::new(Bytes::from_static(b"\x00\x00"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn detects_mixed_formats() {
        let t =
            TupleData::from_values([ColumnRef::Text(b"1"), ColumnRef::Binary(b"\x01")]).unwrap();
        assert!(Row::Tuple(t).format("public.t").is_err());
        let t = TupleData::from_values([ColumnRef::Null, ColumnRef::UnchangedToast]).unwrap();
        assert_eq!(Row::Tuple(t).format("t").unwrap(), None);
        let t = TupleData::from_values([ColumnRef::Null, ColumnRef::Text(b"x")]).unwrap();
        let row = Row::Tuple(t);
        assert_eq!(row.format("t").unwrap(), Some(RowFormat::Text));
        assert!(!row.has_unchanged());
    }
}
