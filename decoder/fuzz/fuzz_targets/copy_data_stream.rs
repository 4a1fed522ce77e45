//! A sequence of CopyData payloads through one stateful `Decoder` (stream-segment tracking,
//! XLogData framing, pgoutput). Input: one byte (bits 0-1: protocol version - 1), then records
//! of a `u32` big-endian length and that many payload bytes (a short last record takes the rest).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pgwarp_decoder::{Decoder, ProtocolVersion, StreamEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let Some(version) = ProtocolVersion::from_u32(u32::from(selector & 3) + 1) else {
        return;
    };
    let mut decoder = Decoder::new(version);
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_be_bytes(*len) as usize).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        let before = decoder.in_stream();
        match decoder.decode_copy_data(&Bytes::copy_from_slice(payload)) {
            Ok(StreamEvent::Message { message, .. }) => {
                assert_eq!(message.to_bytes().expect("re-encode"), payload[25..]);
            }
            Ok(StreamEvent::Keepalive(_)) => assert_eq!(decoder.in_stream(), before),
            Err(_) => assert_eq!(decoder.in_stream(), before),
        }
    }
});
