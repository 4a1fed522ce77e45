//! One pgoutput message in a chosen context. Input: one selector byte (bits 0-1: protocol
//! version - 1, bit 2: inside a stream segment), then the frame. Accepted frames must re-encode
//! to the same bytes, and every column of every tuple must be readable.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pgwarp_decoder::{DecodeContext, Message, OldTuple, ProtocolVersion, decode_message};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let Some(version) = ProtocolVersion::from_u32(u32::from(selector & 3) + 1) else {
        return;
    };
    let ctx = DecodeContext {
        version,
        in_stream: selector & 4 != 0,
    };
    let frame = Bytes::copy_from_slice(frame);
    let Ok(message) = decode_message(&frame, ctx) else {
        return;
    };
    assert_eq!(message.to_bytes().expect("re-encode"), frame);
    let tuples = match &message {
        Message::Insert(m) => vec![&m.new],
        Message::Update(m) => m.old.iter().map(OldTuple::tuple).chain([&m.new]).collect(),
        Message::Delete(m) => vec![m.old.tuple()],
        _ => vec![],
    };
    for t in tuples {
        assert_eq!(t.iter().count(), t.len());
        assert_eq!(t.to_values().len(), t.len());
    }
});
