//! Writing rows as COPY data, binary or text, without decoding values.
//!
//! **Binary** (`FORMAT binary`, see "COPY: Binary Format" in the PostgreSQL docs): an 11-byte
//! signature, a flags word and a header-extension length, then per tuple an `Int16` field count
//! and per field an `Int32` length (`-1` for NULL) plus the value in its type's send format, and
//! an `Int16` `-1` trailer. A pgoutput binary column is `b` + the same length + the same bytes,
//! and a snapshot row is already such a tuple, so encoding is a copy. Values whose type embeds
//! OIDs of user-defined types are patched after the copy (see [`crate::oid_rewrite`]).
//!
//! **Text** (`FORMAT text`): fields separated by tab, rows ended by newline, `\N` for NULL, and
//! backslash, tab, newline and carriage return in values escaped as `\\`, `\t`, `\n`, `\r`.
//! Those four are the only bytes COPY text input treats specially in our output (other
//! backslash sequences only arise after a backslash, which is always escaped).

use bytes::{BufMut, BytesMut};
use pgwarp_decoder::{ColumnRef, ColumnValue};

use crate::error::SinkError;
use crate::image::Image;
use crate::oid_rewrite::{Shape, rewrite};
use crate::plan::{Staged, StagedRow};
use crate::row::{BINARY_COPY_SIGNATURE, Row, RowFormat};
use crate::target::TargetTable;

/// Starts a COPY data stream.
pub(crate) fn put_header(out: &mut BytesMut, format: RowFormat) {
    if format == RowFormat::Binary {
        out.put_slice(BINARY_COPY_SIGNATURE);
        out.put_u32(0);
        out.put_u32(0);
    }
}

/// Ends a COPY data stream.
pub(crate) fn put_trailer(out: &mut BytesMut, format: RowFormat) {
    if format == RowFormat::Binary {
        out.put_i16(-1);
    }
}

/// Encodes rows of one table for one node.
pub(crate) struct Encoder<'a> {
    pub(crate) format: RowFormat,
    pub(crate) table: &'a TargetTable,
    /// Per column, when any column needs OID rewriting; empty otherwise.
    pub(crate) shapes: &'a [Shape],
    pub(crate) node: &'a str,
}

impl Encoder<'_> {
    /// Appends a complete row (all table columns) as one tuple.
    pub(crate) fn row(&self, out: &mut BytesMut, image: &Image) -> Result<(), SinkError> {
        if let (RowFormat::Binary, Image::Row(Row::Copy(t)), true) =
            (self.format, image, self.shapes.is_empty())
        {
            out.put_slice(t.as_bytes());
            return Ok(());
        }
        self.start(out, self.table.columns().len())?;
        for (i, c) in image.columns().enumerate() {
            self.value(out, i, c, i == 0)?;
        }
        self.end(out);
        Ok(())
    }

    /// Appends a staged row: group, filled flag (NULL), the table's columns, the old key.
    pub(crate) fn staged(&self, out: &mut BytesMut, row: &StagedRow) -> Result<(), SinkError> {
        let ncols = self.table.columns().len();
        let key = self.table.key();
        self.start(out, 2 + ncols + key.len())?;
        match self.format {
            RowFormat::Binary => {
                out.put_i32(4);
                out.put_i32(row.group);
                out.put_i32(-1);
            }
            RowFormat::Text => {
                out.put_slice(row.group.to_string().as_bytes());
                out.put_slice(b"\t\\N");
            }
        }
        match &row.values {
            Staged::Image(image) => {
                for (i, c) in image.columns().enumerate() {
                    self.value(out, i, c, false)?;
                }
            }
            Staged::Key(vals) => {
                for i in 0..ncols {
                    let c = match key.iter().position(|&k| k == i) {
                        Some(j) => vals.get(j).map_or(ColumnRef::Null, ColumnValue::as_ref),
                        None => ColumnRef::Null,
                    };
                    self.value(out, i, c, false)?;
                }
            }
        }
        for (j, &k) in key.iter().enumerate() {
            let c = match &row.old_key {
                Some(vals) => vals.get(j).map_or(ColumnRef::Null, ColumnValue::as_ref),
                None => ColumnRef::Null,
            };
            self.value(out, k, c, false)?;
        }
        self.end(out);
        Ok(())
    }

    fn start(&self, out: &mut BytesMut, fields: usize) -> Result<(), SinkError> {
        if self.format == RowFormat::Binary {
            let n = i16::try_from(fields).map_err(|_| SinkError::InvalidRow {
                table: self.table.name().to_owned(),
                reason: format!("{fields} fields do not fit a copy tuple"),
            })?;
            out.put_i16(n);
        }
        Ok(())
    }

    fn end(&self, out: &mut BytesMut) {
        if self.format == RowFormat::Text {
            out.put_u8(b'\n');
        }
    }

    /// Appends one field; `column` selects the rewrite shape; `first` omits the text separator.
    fn value(
        &self,
        out: &mut BytesMut,
        column: usize,
        c: ColumnRef<'_>,
        first: bool,
    ) -> Result<(), SinkError> {
        match self.format {
            RowFormat::Binary => match c {
                ColumnRef::Null | ColumnRef::UnchangedToast => out.put_i32(-1),
                ColumnRef::Binary(b) => {
                    let len = i32::try_from(b.len()).map_err(|_| self.invalid("value too long"))?;
                    out.put_i32(len);
                    let start = out.len();
                    out.put_slice(b);
                    if let Some(shape) = self.shapes.get(column).filter(|s| s.needs_rewrite()) {
                        rewrite(&mut out[start..], shape).map_err(|reason| {
                            SinkError::TypeMismatch {
                                node: self.node.to_owned(),
                                table: self.table.name().to_owned(),
                                column: self
                                    .table
                                    .columns()
                                    .get(column)
                                    .cloned()
                                    .unwrap_or_default(),
                                reason,
                            }
                        })?;
                    }
                }
                ColumnRef::Text(_) => return Err(self.invalid("text value in a binary row")),
            },
            RowFormat::Text => {
                if !first {
                    out.put_u8(b'\t');
                }
                match c {
                    ColumnRef::Null | ColumnRef::UnchangedToast => out.put_slice(b"\\N"),
                    ColumnRef::Text(b) => put_text_escaped(out, b),
                    ColumnRef::Binary(_) => return Err(self.invalid("binary value in a text row")),
                }
            }
        }
        Ok(())
    }

    fn invalid(&self, reason: &str) -> SinkError {
        SinkError::InvalidRow {
            table: self.table.name().to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// Appends a text value with COPY text escaping.
pub(crate) fn put_text_escaped(out: &mut BytesMut, value: &[u8]) {
    let mut rest = value;
    while let Some(i) = rest
        .iter()
        .position(|&b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.put_slice(&rest[..i]);
        out.put_slice(match rest[i] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        rest = &rest[i + 1..];
    }
    out.put_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::CopyTuple;
    use bytes::Bytes;
    use pgwarp_decoder::TupleData;

    fn table() -> TargetTable {
        TargetTable::new("public.t", vec!["id".into(), "v".into()], vec![0], true).unwrap()
    }

    fn enc<'a>(t: &'a TargetTable, format: RowFormat, shapes: &'a [Shape]) -> Encoder<'a> {
        Encoder {
            format,
            table: t,
            shapes,
            node: "n1",
        }
    }

    #[test]
    fn escapes_text() {
        let mut out = BytesMut::new();
        put_text_escaped(&mut out, b"a\\b\tc\nd\re\\N");
        assert_eq!(&out[..], b"a\\\\b\\tc\\nd\\re\\\\N");
    }

    #[test]
    fn encodes_text_rows() {
        let t = table();
        let row =
            Row::Tuple(TupleData::from_values([ColumnRef::Text(b"1"), ColumnRef::Null]).unwrap());
        let mut out = BytesMut::new();
        enc(&t, RowFormat::Text, &[])
            .row(&mut out, &Image::Row(row.clone()))
            .unwrap();
        assert_eq!(&out[..], b"1\t\\N\n");
        out.clear();
        let staged = StagedRow {
            group: 7,
            values: Staged::Image(Image::Row(row)),
            old_key: Some(vec![ColumnValue::Text(Bytes::from_static(b"0"))]),
        };
        enc(&t, RowFormat::Text, &[])
            .staged(&mut out, &staged)
            .unwrap();
        assert_eq!(&out[..], b"7\t\\N\t1\t\\N\t0\n");
    }

    #[test]
    fn encodes_binary_rows_by_copying() {
        let t = table();
        let row = Row::Tuple(
            TupleData::from_values([ColumnRef::Binary(&[0, 0, 0, 9]), ColumnRef::UnchangedToast])
                .unwrap(),
        );
        let mut out = BytesMut::new();
        enc(&t, RowFormat::Binary, &[])
            .row(&mut out, &Image::Row(row))
            .unwrap();
        assert_eq!(
            &out[..],
            b"\x00\x02\x00\x00\x00\x04\x00\x00\x00\x09\xff\xff\xff\xff"
        );
        let tuple = CopyTuple::new(Bytes::from_static(
            b"\x00\x02\x00\x00\x00\x01x\xff\xff\xff\xff",
        ))
        .unwrap();
        out.clear();
        enc(&t, RowFormat::Binary, &[])
            .row(&mut out, &Image::Row(Row::Copy(tuple.clone())))
            .unwrap();
        assert_eq!(&out[..], tuple.as_bytes().as_ref());
        out.clear();
        let staged = StagedRow {
            group: 1,
            values: Staged::Key(vec![ColumnValue::Binary(Bytes::from_static(b"k"))]),
            old_key: None,
        };
        enc(&t, RowFormat::Binary, &[])
            .staged(&mut out, &staged)
            .unwrap();
        assert_eq!(
            &out[..],
            b"\x00\x05\x00\x00\x00\x04\x00\x00\x00\x01\xff\xff\xff\xff\x00\x00\x00\x01k\xff\xff\xff\xff\xff\xff\xff\xff"
        );
    }

    #[test]
    fn rewrites_oids_while_encoding() {
        let t = table();
        let shapes = [
            Shape::Opaque,
            Shape::Array {
                elem_oid: 0xAABBCCDD,
                elem: Box::new(Shape::Opaque),
            },
        ];
        let arr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x9c, 0x40];
        let tuple = TupleData::from_values([ColumnRef::Null, ColumnRef::Binary(&arr)]).unwrap();
        let mut out = BytesMut::new();
        enc(&t, RowFormat::Binary, &shapes)
            .row(&mut out, &Image::Row(Row::Tuple(tuple)))
            .unwrap();
        assert_eq!(&out[out.len() - 4..], &[0xAA, 0xBB, 0xCC, 0xDD]);
        let bad = TupleData::from_values([ColumnRef::Null, ColumnRef::Binary(&[0, 0])]).unwrap();
        let err = enc(&t, RowFormat::Binary, &shapes)
            .row(&mut out, &Image::Row(Row::Tuple(bad)))
            .unwrap_err();
        assert!(
            matches!(err, SinkError::TypeMismatch { ref column, .. } if column == "v"),
            "{err}"
        );
    }
}
