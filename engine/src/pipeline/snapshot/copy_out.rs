//! Cutting a binary `COPY ... TO STDOUT` stream into tuples as it arrives.
//!
//! The server sends one CopyData message per row, the file header riding on the first; but
//! nothing in the protocol promises that, so the splitter accepts any cut: a tuple split over
//! messages is carried over (copied once), while tuples wholly inside a message are read in
//! place. Each tuple is walked once: the walk checks every length and notes where the
//! distribution field lies, so the reader can hash it and append the tuple's bytes, unchanged,
//! to its shard's buffer without building anything per row.

use bytes::{Bytes, BytesMut};
use pgwarp_decoder::ColumnRef;
use pgwarp_sink::BINARY_COPY_SIGNATURE;

use super::super::error::PipelineError;

/// Incremental splitter of one binary COPY stream.
#[derive(Debug, Default)]
pub struct CopySplitter {
    carry: BytesMut,
    header_done: bool,
    ended: bool,
}

/// Where the requested field of a tuple is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    /// No field was requested, or the tuple has fewer fields.
    Missing,
    /// SQL NULL.
    Null,
    /// The value's bytes: `[start, end)` of the buffer.
    Value(usize, usize),
}

/// One complete tuple: `[start, end)` of the buffer [`CopySplitter::feed`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TupleSpan {
    /// First byte (the field count).
    pub start: usize,
    /// The byte after the last field.
    pub end: usize,
    /// The requested field.
    pub key: KeyField,
}

impl TupleSpan {
    /// The requested field as a column value, `None` when missing.
    #[inline]
    pub fn key<'a>(&self, buf: &'a [u8]) -> Option<ColumnRef<'a>> {
        match self.key {
            KeyField::Missing => None,
            KeyField::Null => Some(ColumnRef::Null),
            KeyField::Value(s, e) => buf.get(s..e).map(ColumnRef::Binary),
        }
    }
}

fn bad(reason: String) -> PipelineError {
    PipelineError::Internal(format!(
        "invalid binary COPY data from the source: {reason}"
    ))
}

/// What starts at `pos`: a complete tuple, the end marker, or data that stops before the
/// tuple does.
enum Scan {
    Tuple(TupleSpan),
    End,
    Partial,
}

/// Walks the tuple at `pos`, noting field `key` (an index among the fields).
#[inline]
fn scan(buf: &[u8], pos: usize, key: Option<usize>) -> Result<Scan, PipelineError> {
    let Some(&[c0, c1]) = buf.get(pos..pos + 2) else {
        return Ok(Scan::Partial);
    };
    let count = i16::from_be_bytes([c0, c1]);
    if count == -1 {
        return Ok(Scan::End);
    }
    if count < 0 {
        return Err(bad(format!("negative field count at offset {pos}")));
    }
    let mut field = KeyField::Missing;
    let mut p = pos + 2;
    for i in 0..count as usize {
        let Some(&[l0, l1, l2, l3]) = buf.get(p..p + 4) else {
            return Ok(Scan::Partial);
        };
        let l = i32::from_be_bytes([l0, l1, l2, l3]);
        p += 4;
        if l == -1 {
            if key == Some(i) {
                field = KeyField::Null;
            }
            continue;
        }
        if l < 0 {
            return Err(bad(format!("negative field length at offset {}", p - 4)));
        }
        let end = p + l as usize;
        if end > buf.len() {
            return Ok(Scan::Partial);
        }
        if key == Some(i) {
            field = KeyField::Value(p, end);
        }
        p = end;
    }
    Ok(Scan::Tuple(TupleSpan {
        start: pos,
        end: p,
        key: field,
    }))
}

impl CopySplitter {
    /// A splitter at the start of a stream.
    pub fn new() -> CopySplitter {
        CopySplitter::default()
    }

    /// Feeds one message. The complete tuples are appended to `out` as spans of the returned
    /// buffer (the message itself, unless a tuple was carried over from the previous one);
    /// `key` is the index of the field whose place to note.
    pub fn feed(
        &mut self,
        data: Bytes,
        key: Option<usize>,
        out: &mut Vec<TupleSpan>,
    ) -> Result<Bytes, PipelineError> {
        let buf = if self.carry.is_empty() {
            data
        } else {
            self.carry.extend_from_slice(&data);
            self.carry.split().freeze()
        };
        let mut pos = 0;
        if !self.header_done {
            if buf.len() < 19 {
                self.carry.extend_from_slice(&buf);
                return Ok(Bytes::new());
            }
            if buf[..11] != BINARY_COPY_SIGNATURE[..] {
                return Err(bad("missing signature".into()));
            }
            let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
            if buf.len() < 19 + ext {
                self.carry.extend_from_slice(&buf);
                return Ok(Bytes::new());
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        while !self.ended {
            match scan(&buf, pos, key)? {
                Scan::Partial => break,
                Scan::End => {
                    self.ended = true;
                    pos += 2;
                }
                Scan::Tuple(span) => {
                    pos = span.end;
                    out.push(span);
                }
            }
        }
        if self.ended && pos < buf.len() {
            return Err(bad("data after the end marker".into()));
        }
        if pos < buf.len() {
            self.carry.extend_from_slice(&buf[pos..]);
        }
        Ok(buf)
    }

    /// Checks that the stream ended properly.
    pub fn finish(&self) -> Result<(), PipelineError> {
        if self.ended && self.carry.is_empty() {
            Ok(())
        } else {
            Err(bad("the stream ended without its end marker".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(row: &[Option<&[u8]>]) -> Vec<u8> {
        let mut v = (row.len() as i16).to_be_bytes().to_vec();
        for f in row {
            match f {
                None => v.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    v.extend_from_slice(b);
                }
            }
        }
        v
    }

    fn stream(rows: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut v = BINARY_COPY_SIGNATURE.to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for row in rows {
            v.extend(tuple(row));
        }
        v.extend_from_slice(&(-1i16).to_be_bytes());
        v
    }

    /// Feeds `data` cut every `step` bytes; returns each tuple's bytes and key field.
    fn split(data: &[u8], step: usize, key: Option<usize>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut s = CopySplitter::new();
        let mut spans = Vec::new();
        let mut out = Vec::new();
        for piece in data.chunks(step) {
            let buf = s
                .feed(Bytes::copy_from_slice(piece), key, &mut spans)
                .unwrap();
            for span in spans.drain(..) {
                let value = span.key(&buf).map(|v| match v {
                    ColumnRef::Binary(b) => b.to_vec(),
                    _ => b"NULL".to_vec(),
                });
                out.push((buf[span.start..span.end].to_vec(), value));
            }
        }
        s.finish().unwrap();
        out
    }

    #[test]
    fn any_cut_yields_the_same_tuples_and_keys() {
        let rows: [&[Option<&[u8]>]; 3] = [
            &[Some(b"abc"), None],
            &[Some(b""), Some(b"0123456789")],
            &[None, None],
        ];
        let data = stream(&rows);
        for step in 1..data.len() {
            let got = split(&data, step, Some(1));
            assert_eq!(got.len(), 3, "step {step}");
            for (row, (bytes, _)) in rows.iter().zip(&got) {
                assert_eq!(bytes, &tuple(row), "step {step}");
            }
            assert_eq!(got[0].1.as_deref(), Some(&b"NULL"[..]));
            assert_eq!(got[1].1.as_deref(), Some(&b"0123456789"[..]));
            assert_eq!(got[2].1.as_deref(), Some(&b"NULL"[..]));
        }
        let first = split(&data, data.len(), Some(0));
        assert_eq!(first[0].1.as_deref(), Some(&b"abc"[..]));
        assert_eq!(first[1].1.as_deref(), Some(&b""[..]));
        assert!(split(&data, 7, Some(2)).iter().all(|(_, k)| k.is_none()));
        assert!(split(&data, 7, None).iter().all(|(_, k)| k.is_none()));
    }

    #[test]
    fn truncated_and_malformed_streams_are_errors() {
        let data = stream(&[&[Some(b"abc")]]);
        let mut out = Vec::new();
        let mut s = CopySplitter::new();
        s.feed(
            Bytes::copy_from_slice(&data[..data.len() - 2]),
            None,
            &mut out,
        )
        .unwrap();
        assert!(s.finish().is_err());
        let mut bad_sig = data.clone();
        bad_sig[0] = b'X';
        assert!(
            CopySplitter::new()
                .feed(Bytes::from(bad_sig), None, &mut out)
                .is_err()
        );
        let mut negative = data.clone();
        negative[19..23].copy_from_slice(&[0, 1, 0xff, 0xff]);
        assert!(
            CopySplitter::new()
                .feed(Bytes::from(negative), None, &mut out)
                .is_err()
        );
        let mut trailing = data.clone();
        trailing.push(0);
        assert!(
            CopySplitter::new()
                .feed(Bytes::from(trailing), None, &mut out)
                .is_err()
        );
    }
}
