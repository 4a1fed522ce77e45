//! Golden-byte tests: each message kind from hand-written wire bytes (as the PostgreSQL docs lay
//! them out), decoded field by field and re-encoded to the same bytes.

use bytes::Bytes;

use super::*;
use crate::lsn::Lsn;
use crate::time::PgTimestamp;
use crate::tuple::{ColumnRef, ColumnValue};

const V1: DecodeContext = DecodeContext {
    version: ProtocolVersion::V1,
    in_stream: false,
};
const V4: DecodeContext = DecodeContext {
    version: ProtocolVersion::V4,
    in_stream: false,
};
const V4_STREAM: DecodeContext = DecodeContext {
    version: ProtocolVersion::V4,
    in_stream: true,
};

/// Concatenates wire pieces.
fn frame(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

/// Decodes, checks the re-encoding is identical, and returns the message.
fn decode_ok(bytes: &Bytes, ctx: DecodeContext) -> Message {
    let m = decode_message(bytes, ctx).unwrap();
    assert_eq!(m.to_bytes().unwrap(), *bytes, "re-encoding {m:?}");
    m
}

fn err(bytes: &[u8], ctx: DecodeContext) -> (usize, String) {
    let e = decode_message(&Bytes::copy_from_slice(bytes), ctx).unwrap_err();
    (e.offset(), e.to_string())
}

const LSN_A: &[u8] = b"\x00\x00\x00\x00\x01\x6B\x37\x48"; // 0/16B3748
const LSN_B: &[u8] = b"\x00\x00\x00\x01\x00\x00\x00\x10"; // 1/10
const TIME: &[u8] = b"\x00\x02\x8A\x5E\x3C\x1D\x40\x00";
const TIME_V: PgTimestamp = PgTimestamp(0x0002_8A5E_3C1D_4000);
const XID: &[u8] = b"\x00\x00\x02\xF1"; // 753

#[test]
fn begin_and_commit() {
    let b = frame(&[b"B", LSN_A, TIME, XID]);
    assert_eq!(
        decode_ok(&b, V1),
        Message::Begin(Begin {
            final_lsn: Lsn(0x16B3748),
            commit_time: TIME_V,
            xid: 753,
        })
    );
    let c = frame(&[b"C\x00", LSN_A, LSN_B, TIME]);
    assert_eq!(
        decode_ok(&c, V1),
        Message::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x16B3748),
            end_lsn: Lsn(0x1_0000_0010),
            commit_time: TIME_V,
        })
    );
}

#[test]
fn origin() {
    let o = frame(&[b"O", LSN_B, b"pg_1\0"]);
    assert_eq!(
        decode_ok(&o, V1),
        Message::Origin(Origin {
            commit_lsn: Lsn(0x1_0000_0010),
            name: "pg_1".into(),
        })
    );
}

#[test]
fn relation_with_key_column() {
    let r = frame(&[
        b"R\x00\x00\x40\x00public\0orders\0d\x00\x02",
        b"\x01id\0\x00\x00\x00\x14\xff\xff\xff\xff",
        b"\x00note\0\x00\x00\x04\x13\x00\x00\x00\x24",
    ]);
    let Message::Relation(rel) = decode_ok(&r, V1) else {
        panic!("expected relation")
    };
    assert_eq!(rel.xid, None);
    assert_eq!(rel.relation_id, 16384);
    assert_eq!(
        (rel.namespace.as_str(), rel.name.as_str()),
        ("public", "orders")
    );
    assert_eq!(rel.replica_identity, ReplicaIdentity::Default);
    assert_eq!(rel.columns.len(), 2);
    assert!(rel.columns[0].is_key());
    assert_eq!(rel.columns[0].name, "id");
    assert_eq!(rel.columns[0].type_id, 20);
    assert_eq!(rel.columns[0].type_modifier, -1);
    assert!(!rel.columns[1].is_key());
    assert_eq!(rel.columns[1].type_id, 1043);
    assert_eq!(rel.columns[1].type_modifier, 36);
}

#[test]
fn type_message_in_and_out_of_stream() {
    let y = frame(&[b"Y\x00\x00\x40\x10public\0mood\0"]);
    let expected = Type {
        xid: None,
        type_id: 16400,
        namespace: "public".into(),
        name: "mood".into(),
    };
    assert_eq!(decode_ok(&y, V1), Message::Type(expected.clone()));
    let ys = frame(&[b"Y", XID, b"\x00\x00\x40\x10public\0mood\0"]);
    assert_eq!(
        decode_ok(&ys, V4_STREAM),
        Message::Type(Type {
            xid: Some(753),
            ..expected
        })
    );
}

#[test]
fn insert_update_delete() {
    let tuple = b"\x00\x03t\x00\x00\x00\x0242nu";
    let i = frame(&[b"I\x00\x00\x40\x00N", tuple]);
    let Message::Insert(ins) = decode_ok(&i, V1) else {
        panic!("expected insert")
    };
    assert_eq!(ins.relation_id, 16384);
    assert_eq!(
        ins.new.iter().collect::<Vec<_>>(),
        [
            ColumnRef::Text(b"42"),
            ColumnRef::Null,
            ColumnRef::UnchangedToast
        ]
    );

    let key = b"\x00\x01b\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x07";
    let u = frame(&[b"U", XID, b"\x00\x00\x40\x00K", key, b"N", tuple]);
    let Message::Update(upd) = decode_ok(&u, V4_STREAM) else {
        panic!("expected update")
    };
    assert_eq!(upd.xid, Some(753));
    let Some(OldTuple::Key(old)) = &upd.old else {
        panic!("expected key")
    };
    assert_eq!(
        old.to_values(),
        [ColumnValue::Binary(Bytes::from_static(&[
            0, 0, 0, 0, 0, 0, 0, 7
        ]))]
    );
    assert_eq!(upd.new.len(), 3);

    let u_full = frame(&[b"U\x00\x00\x40\x00O", tuple, b"N", tuple]);
    let Message::Update(upd) = decode_ok(&u_full, V1) else {
        panic!("expected update")
    };
    assert!(matches!(upd.old, Some(OldTuple::Full(_))));
    let u_plain = frame(&[b"U\x00\x00\x40\x00N", tuple]);
    let Message::Update(upd) = decode_ok(&u_plain, V1) else {
        panic!("expected update")
    };
    assert_eq!(upd.old, None);

    let d = frame(&[b"D\x00\x00\x40\x00K", key]);
    let Message::Delete(del) = decode_ok(&d, V1) else {
        panic!("expected delete")
    };
    assert_eq!(del.old.tuple().len(), 1);
    assert!(matches!(del.old, OldTuple::Key(_)));
    let d = frame(&[b"D\x00\x00\x40\x00O", tuple]);
    assert!(matches!(
        decode_ok(&d, V1),
        Message::Delete(Delete {
            old: OldTuple::Full(_),
            ..
        })
    ));
}

#[test]
fn truncate_options() {
    let t = frame(&[b"T\x00\x00\x00\x02\x03\x00\x00\x40\x00\x00\x00\x40\x01"]);
    let Message::Truncate(tr) = decode_ok(&t, V1) else {
        panic!("expected truncate")
    };
    assert!(tr.cascade() && tr.restart_identity());
    assert_eq!(tr.relation_ids, [16384, 16385]);
}

#[test]
fn logical_message() {
    let m = frame(&[b"M\x01", LSN_A, b"pgwarp\0\x00\x00\x00\x03abc"]);
    let Message::Logical(lm) = decode_ok(&m, V1) else {
        panic!("expected message")
    };
    assert!(lm.transactional());
    assert_eq!(lm.lsn, Lsn(0x16B3748));
    assert_eq!(lm.prefix, "pgwarp");
    assert_eq!(lm.content.as_ref(), b"abc");
    assert_eq!(lm.content.as_ptr(), m[m.len() - 3..].as_ptr());
}

#[test]
fn stream_messages() {
    let s = frame(&[b"S", XID, b"\x01"]);
    assert_eq!(
        decode_ok(&s, V4),
        Message::StreamStart(StreamStart {
            xid: 753,
            first_segment: true
        })
    );
    assert_eq!(decode_ok(&frame(&[b"E"]), V4_STREAM), Message::StreamStop);
    let c = frame(&[b"c", XID, b"\x00", LSN_A, LSN_B, TIME]);
    assert_eq!(
        decode_ok(&c, V4),
        Message::StreamCommit(StreamCommit {
            xid: 753,
            flags: 0,
            commit_lsn: Lsn(0x16B3748),
            end_lsn: Lsn(0x1_0000_0010),
            commit_time: TIME_V,
        })
    );
}

#[test]
fn stream_abort_with_and_without_parallel_fields() {
    let plain = frame(&[b"A", XID, b"\x00\x00\x02\xF2"]);
    let expected = StreamAbort {
        xid: 753,
        subxid: 754,
        parallel: None,
    };
    let v2 = DecodeContext::new(ProtocolVersion::V2);
    assert_eq!(
        decode_ok(&plain, v2),
        Message::StreamAbort(expected.clone())
    );
    assert_eq!(
        decode_ok(&plain, V4),
        Message::StreamAbort(expected.clone())
    );
    let parallel = frame(&[b"A", XID, b"\x00\x00\x02\xF2", LSN_A, TIME]);
    assert_eq!(
        decode_ok(&parallel, V4),
        Message::StreamAbort(StreamAbort {
            parallel: Some(AbortInfo {
                abort_lsn: Lsn(0x16B3748),
                abort_time: TIME_V,
            }),
            ..expected
        })
    );
    let v3 = DecodeContext::new(ProtocolVersion::V3);
    assert_eq!(
        err(&parallel, v3),
        (
            9,
            "invalid stream abort message (type 'A') at byte 9: 16 unexpected trailing bytes"
                .into()
        )
    );
    assert_eq!(err(&parallel[..20], V4).0, 9);
}

#[test]
fn two_phase_messages() {
    let bp = frame(&[b"b", LSN_A, LSN_B, TIME, XID, b"gid-1\0"]);
    assert_eq!(
        decode_ok(&bp, V4),
        Message::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(0x16B3748),
            end_lsn: Lsn(0x1_0000_0010),
            prepare_time: TIME_V,
            xid: 753,
            gid: "gid-1".into(),
        })
    );
    let prepared = Prepare {
        flags: 0,
        prepare_lsn: Lsn(0x16B3748),
        end_lsn: Lsn(0x1_0000_0010),
        prepare_time: TIME_V,
        xid: 753,
        gid: "gid-1".into(),
    };
    let p = frame(&[b"P\x00", LSN_A, LSN_B, TIME, XID, b"gid-1\0"]);
    assert_eq!(decode_ok(&p, V4), Message::Prepare(prepared.clone()));
    let sp = frame(&[b"p\x00", LSN_A, LSN_B, TIME, XID, b"gid-1\0"]);
    assert_eq!(decode_ok(&sp, V4), Message::StreamPrepare(prepared));
    let k = frame(&[b"K\x00", LSN_A, LSN_B, TIME, XID, b"gid-1\0"]);
    assert_eq!(
        decode_ok(&k, V4),
        Message::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(0x16B3748),
            end_lsn: Lsn(0x1_0000_0010),
            commit_time: TIME_V,
            xid: 753,
            gid: "gid-1".into(),
        })
    );
    let r = frame(&[
        b"r\x00",
        LSN_A,
        LSN_B,
        TIME,
        b"\0\0\0\0\0\0\0\x09",
        XID,
        b"g\0",
    ]);
    assert_eq!(
        decode_ok(&r, V4),
        Message::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(0x16B3748),
            rollback_end_lsn: Lsn(0x1_0000_0010),
            prepare_time: TIME_V,
            rollback_time: PgTimestamp(9),
            xid: 753,
            gid: "g".into(),
        })
    );
}

#[test]
fn stream_messages_need_version_2() {
    for bytes in [&b"E"[..], b"S\0\0\0\x01\x01", b"A\0\0\0\x01\0\0\0\x01"] {
        let (offset, text) = err(bytes, V1);
        assert_eq!(offset, 0);
        assert!(
            text.ends_with("message type not valid in protocol version 1"),
            "{text}"
        );
    }
}

#[test]
fn two_phase_messages_are_accepted_in_any_version() {
    // PostgreSQL 15 sends them under proto_version 1 and 2 when the slot has two_phase = true.
    let k = frame(&[b"K\x00", LSN_A, LSN_B, TIME, XID, b"gid-1\0"]);
    assert!(matches!(decode_ok(&k, V1), Message::CommitPrepared(_)));
}

#[test]
fn malformed_messages_name_tag_and_offset() {
    let cases: &[(&[u8], usize, &str)] = &[
        (b"", 0, "invalid pgoutput message at byte 0: empty message"),
        (
            b"Z",
            0,
            "invalid pgoutput message (type 'Z') at byte 0: unknown message type",
        ),
        (
            b"B\x00\x00",
            1,
            "invalid begin message (type 'B') at byte 1: \
             unexpected end of data reading final lsn: need 8 bytes, 2 left",
        ),
        (
            b"I\x00\x00\x40\x00X",
            5,
            "invalid insert message (type 'I') at byte 5: invalid new tuple type byte 0x58",
        ),
        (
            b"U\x00\x00\x40\x00K\x00\x00Q",
            8,
            "invalid update message (type 'U') at byte 8: invalid new tuple type byte 0x51",
        ),
        (
            b"D\x00\x00\x40\x00N\x00\x00",
            5,
            "invalid delete message (type 'D') at byte 5: invalid tuple type byte 0x4e",
        ),
        (
            b"R\x00\x00\x40\x00public\0t\0x\x00\x00",
            14,
            "invalid relation message (type 'R') at byte 14: invalid replica identity byte 0x78",
        ),
        (
            b"R\x00\x00\x40\x00pub",
            5,
            "invalid relation message (type 'R') at byte 5: unterminated string reading namespace",
        ),
        (
            b"R\x00\x00\x40\x00p\xffb\0",
            6,
            "invalid relation message (type 'R') at byte 6: invalid UTF-8 in namespace",
        ),
        (
            b"T\x7f\xff\xff\xff\x00\x00\x00\x00\x01",
            1,
            "invalid truncate message (type 'T') at byte 1: invalid relation count 2147483647: \
             4 bytes left",
        ),
        (
            b"T\xff\xff\xff\xff\x00",
            1,
            "invalid truncate message (type 'T') at byte 1: invalid relation count -1: 0 bytes left",
        ),
        (
            b"M\x00\0\0\0\0\0\0\0\0p\0\x00\x00\x01\x00ab",
            12,
            "invalid logical decoding message (type 'M') at byte 12: \
             invalid content length 256: 2 bytes left",
        ),
        (
            b"S\0\0\0\x01\x02",
            5,
            "invalid stream start message (type 'S') at byte 5: invalid first segment byte 0x02",
        ),
        (
            b"E\x00",
            1,
            "invalid stream stop message (type 'E') at byte 1: 1 unexpected trailing bytes",
        ),
    ];
    for (bytes, offset, text) in cases {
        assert_eq!(err(bytes, V4), (*offset, (*text).to_owned()), "{bytes:?}");
    }
}

#[test]
fn huge_relation_column_count_does_not_preallocate() {
    // 65535 columns announced with 3 bytes left: fails reading the first column's name.
    let (offset, text) = err(b"R\0\0\0\x01s\0t\0d\xff\xff\x01ab", V1);
    assert_eq!(offset, 13);
    assert!(
        text.ends_with("unterminated string reading column name"),
        "{text}"
    );
}
