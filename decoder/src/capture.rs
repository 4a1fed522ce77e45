//! A file format for captured pgoutput streams.
//!
//! Captures let tests, benchmarks and the `decode` demo replay a real server's bytes without a
//! server. The format is deliberately trivial, so other tools can write it:
//!
//! ```text
//! header:  8 bytes  "pgoutput"            magic
//!          4 bytes  u32 big-endian        protocol version the stream was produced with
//! records: 8 bytes  u64 big-endian        LSN of the message (pg_logical_slot_*_changes.lsn,
//!                                         or the XLogData start position)
//!          4 bytes  u32 big-endian        length n of the message
//!          n bytes                        one pgoutput message, tag first
//! ```
//!
//! Messages inside stream segments are stored as sent (with their xids); decode the records in
//! order with one [`crate::Decoder`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::lsn::Lsn;
use crate::pgoutput::ProtocolVersion;

/// The magic bytes at the start of a capture.
pub const MAGIC: &[u8; 8] = b"pgoutput";

/// Why a capture file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file does not start with [`MAGIC`] and a version.
    #[error("not a pgoutput capture: missing \"pgoutput\" header")]
    BadMagic,
    /// The version in the header is not 1 to 4.
    #[error("unsupported protocol version {0} in capture header")]
    BadVersion(u32),
    /// A record runs past the end of the file.
    #[error("capture truncated in record {index} at byte {offset}")]
    Truncated {
        /// 0-based record number.
        index: usize,
        /// Byte offset of the record in the file.
        offset: usize,
    },
    /// A message is too large for the format.
    #[error("message of {0} bytes too large for a capture record")]
    TooLarge(usize),
}

/// Appends a capture header to `buf`.
pub fn write_header(buf: &mut BytesMut, version: ProtocolVersion) {
    buf.put_slice(MAGIC);
    buf.put_u32(version.as_u32());
}

/// Appends one record to `buf`.
pub fn write_record(buf: &mut BytesMut, lsn: Lsn, message: &[u8]) -> Result<(), CaptureError> {
    let len = u32::try_from(message.len()).map_err(|_| CaptureError::TooLarge(message.len()))?;
    buf.reserve(12 + message.len());
    buf.put_u64(lsn.0);
    buf.put_u32(len);
    buf.put_slice(message);
    Ok(())
}

/// Reads a capture: the header, then records on iteration (each message a slice of `data`).
#[derive(Debug, Clone)]
pub struct CaptureReader {
    data: Bytes,
    pos: usize,
    index: usize,
    version: ProtocolVersion,
}

impl CaptureReader {
    /// Checks the header of `data`.
    pub fn new(data: Bytes) -> Result<CaptureReader, CaptureError> {
        let header = data.get(..12).ok_or(CaptureError::BadMagic)?;
        let (magic, version) = header.split_at(8);
        if magic != MAGIC {
            return Err(CaptureError::BadMagic);
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(version);
        let v = u32::from_be_bytes(v);
        let version = ProtocolVersion::from_u32(v).ok_or(CaptureError::BadVersion(v))?;
        Ok(CaptureReader {
            data,
            pos: 12,
            index: 0,
            version,
        })
    }

    /// The protocol version recorded in the header.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }
}

impl Iterator for CaptureReader {
    type Item = Result<(Lsn, Bytes), CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let truncated = CaptureError::Truncated {
            index: self.index,
            offset: self.pos,
        };
        let record = rest.first_chunk::<12>().and_then(|head| {
            let (lsn, len) = head.split_at(8);
            let lsn = u64::from_be_bytes(lsn.try_into().ok()?);
            let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
            let start = self.pos + 12;
            let end = start
                .checked_add(len)
                .filter(|&end| end <= self.data.len())?;
            Some((Lsn(lsn), start, end))
        });
        match record {
            Some((lsn, start, end)) => {
                self.pos = end;
                self.index += 1;
                Some(Ok((lsn, self.data.slice(start..end))))
            }
            None => {
                self.pos = self.data.len();
                Some(Err(truncated))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_records() {
        let mut buf = BytesMut::new();
        write_header(&mut buf, ProtocolVersion::V2);
        write_record(&mut buf, Lsn(0x16B3748), b"E").unwrap();
        write_record(&mut buf, Lsn(1), b"").unwrap();
        assert_eq!(
            &buf[..],
            b"pgoutput\0\0\0\x02\0\0\0\0\x01\x6B\x37\x48\0\0\0\x01E\0\0\0\0\0\0\0\x01\0\0\0\0"
        );
        let mut r = CaptureReader::new(buf.freeze()).unwrap();
        assert_eq!(r.version(), ProtocolVersion::V2);
        assert_eq!(
            r.next(),
            Some(Ok((Lsn(0x16B3748), Bytes::from_static(b"E"))))
        );
        assert_eq!(r.next(), Some(Ok((Lsn(1), Bytes::new()))));
        assert_eq!(r.next(), None);
    }

    #[test]
    fn rejects_bad_files() {
        assert_eq!(
            CaptureReader::new(Bytes::from_static(b"pgoutpu")).unwrap_err(),
            CaptureError::BadMagic
        );
        assert_eq!(
            CaptureReader::new(Bytes::from_static(b"pgoutput\0\0\0\x05")).unwrap_err(),
            CaptureError::BadVersion(5)
        );
        let mut r = CaptureReader::new(Bytes::from_static(
            b"pgoutput\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0\x09E",
        ))
        .unwrap();
        assert_eq!(
            r.next(),
            Some(Err(CaptureError::Truncated {
                index: 0,
                offset: 12
            }))
        );
        assert_eq!(r.next(), None);
    }
}
