//! One CopyData payload of the replication protocol (`w`, `k`), and the standby status update
//! decoder. Accepted input must re-encode to the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgwarp_decoder::{ReplicationMessage, StandbyStatusUpdate};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    if let Ok(m) = ReplicationMessage::decode(&payload) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(out.freeze(), payload);
    }
    if let Ok(s) = StandbyStatusUpdate::decode(data) {
        let mut out = BytesMut::new();
        s.encode(&mut out);
        assert_eq!(&out[..], data);
    }
});
