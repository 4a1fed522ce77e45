//! Cutting a binary `COPY ... TO STDOUT` stream into tuples as it arrives.
//!
//! The server sends one CopyData message per row, the file header riding on the first; but
//! nothing in the protocol promises that, so the splitter accepts any cut: a tuple split over
//! messages is carried over (copied once), while tuples wholly inside a message are zero-copy
//! slices of it, which the sink then writes into the shard without decoding a value.

use bytes::{Bytes, BytesMut};
use pgwarp_sink::{BINARY_COPY_SIGNATURE, CopyTuple};

use super::super::error::PipelineError;

/// Incremental splitter of one binary COPY stream.
#[derive(Debug, Default)]
pub struct CopySplitter {
    carry: BytesMut,
    header_done: bool,
    ended: bool,
}

fn bad(reason: String) -> PipelineError {
    PipelineError::Internal(format!(
        "invalid binary COPY data from the source: {reason}"
    ))
}

/// Length of the complete tuple at `pos`, `Some(None)` at the end marker, `None` when the
/// data stops before the tuple does.
fn scan(buf: &[u8], pos: usize) -> Result<Option<Option<usize>>, PipelineError> {
    let Some(count) = buf.get(pos..pos + 2) else {
        return Ok(None);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Some(None));
    }
    if count < 0 {
        return Err(bad(format!("negative field count at offset {pos}")));
    }
    let mut p = pos + 2;
    for _ in 0..count {
        let Some(l) = buf.get(p..p + 4) else {
            return Ok(None);
        };
        let l = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
        p += 4;
        if l == -1 {
            continue;
        }
        if l < 0 {
            return Err(bad(format!("negative field length at offset {}", p - 4)));
        }
        p += l as usize;
        if p > buf.len() {
            return Ok(None);
        }
    }
    Ok(Some(Some(p - pos)))
}

impl CopySplitter {
    /// A splitter at the start of a stream.
    pub fn new() -> CopySplitter {
        CopySplitter::default()
    }

    /// Feeds one message; complete tuples are appended to `out`.
    pub fn feed(&mut self, data: Bytes, out: &mut Vec<CopyTuple>) -> Result<(), PipelineError> {
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
                return Ok(());
            }
            if buf[..11] != BINARY_COPY_SIGNATURE[..] {
                return Err(bad("missing signature".into()));
            }
            let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
            if buf.len() < 19 + ext {
                self.carry.extend_from_slice(&buf);
                return Ok(());
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        while !self.ended {
            match scan(&buf, pos)? {
                None => break,
                Some(None) => {
                    self.ended = true;
                    pos += 2;
                }
                Some(Some(_)) => {
                    let (tuple, next) = CopyTuple::parse_at(&buf, pos)
                        .map_err(|e| bad(e.to_string()))?
                        .ok_or_else(|| bad("unexpected end marker".into()))?;
                    out.push(tuple);
                    pos = next;
                }
            }
        }
        if self.ended && pos < buf.len() {
            return Err(bad("data after the end marker".into()));
        }
        if pos < buf.len() {
            self.carry.extend_from_slice(&buf[pos..]);
        }
        Ok(())
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

    fn stream(rows: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut v = BINARY_COPY_SIGNATURE.to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for row in rows {
            v.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in *row {
                match f {
                    None => v.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        v.extend_from_slice(b);
                    }
                }
            }
        }
        v.extend_from_slice(&(-1i16).to_be_bytes());
        v
    }

    #[test]
    fn any_cut_yields_the_same_tuples() {
        let data = stream(&[
            &[Some(b"abc"), None],
            &[Some(b""), Some(b"0123456789")],
            &[None, None],
        ]);
        for step in 1..data.len() {
            let mut s = CopySplitter::new();
            let mut out = Vec::new();
            for piece in data.chunks(step) {
                s.feed(Bytes::copy_from_slice(piece), &mut out).unwrap();
            }
            s.finish().unwrap();
            assert_eq!(out.len(), 3, "step {step}");
            let f: Vec<_> = out[1].fields().collect();
            assert_eq!(f[1].bytes(), Some(&b"0123456789"[..]));
            assert!(out[2].fields().all(|c| c.is_null()));
        }
    }

    #[test]
    fn truncated_streams_are_errors() {
        let data = stream(&[&[Some(b"abc")]]);
        let mut s = CopySplitter::new();
        let mut out = Vec::new();
        s.feed(Bytes::copy_from_slice(&data[..data.len() - 2]), &mut out)
            .unwrap();
        assert!(s.finish().is_err());
        let mut s = CopySplitter::new();
        let mut bad_sig = data.clone();
        bad_sig[0] = b'X';
        assert!(s.feed(Bytes::from(bad_sig), &mut out).is_err());
    }
}
