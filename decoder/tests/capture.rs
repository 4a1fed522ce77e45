//! Decodes `testdata/pg15_v2_binary_mixed.bin`, a stream captured from PostgreSQL 15 by
//! `tests/tests/decoder_golden.rs` (protocol 2, binary mode, streaming on with
//! `logical_decoding_work_mem = 64kB`), and checks its content message by message.

use std::collections::BTreeMap;

use bytes::Bytes;
use pgwarp_decoder::capture::CaptureReader;
use pgwarp_decoder::*;

const CAPTURE: &[u8] = include_bytes!("../testdata/pg15_v2_binary_mixed.bin");

fn decode_all() -> Vec<(Lsn, Message)> {
    let reader = CaptureReader::new(Bytes::from_static(CAPTURE)).unwrap();
    assert_eq!(reader.version(), ProtocolVersion::V2);
    let mut decoder = Decoder::new(reader.version());
    reader
        .map(|record| {
            let (lsn, frame) = record.unwrap();
            let message = decoder.decode_at(&frame, lsn).unwrap();
            assert_eq!(message.to_bytes().unwrap(), frame, "re-encoding {lsn}");
            (lsn, message)
        })
        .collect()
}

#[test]
fn every_message_decodes_and_re_encodes() {
    let messages = decode_all();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for (_, m) in &messages {
        *counts.entry(m.tag() as char).or_default() += 1;
    }
    let counts: Vec<(char, usize)> = counts.into_iter().collect();
    assert_eq!(
        counts,
        [
            ('B', 5),
            ('C', 5),
            ('D', 6),
            ('E', 2),
            ('I', 300),
            ('M', 2),
            ('R', 3),
            ('S', 2),
            ('T', 1),
            ('U', 16),
            ('Y', 1),
            ('c', 1),
        ]
    );
    assert_eq!(messages.len(), 344);
}

#[test]
fn transactions_are_consistent() {
    let messages = decode_all();
    let mut open: Option<Begin> = None;
    for (lsn, m) in &messages {
        match m {
            Message::Begin(b) => {
                assert!(open.is_none());
                open = Some(b.clone());
            }
            Message::Commit(c) => {
                let b = open.take().unwrap();
                assert_eq!((b.final_lsn, b.commit_time), (c.commit_lsn, c.commit_time));
                assert_eq!(*lsn, c.end_lsn);
            }
            Message::StreamCommit(c) => assert_eq!(*lsn, c.end_lsn),
            _ => {}
        }
    }
    assert!(open.is_none());
}

#[test]
fn binary_values_of_the_first_rows() {
    let messages = decode_all();
    let Message::Type(mood) = &messages[1].1 else {
        panic!("expected type")
    };
    assert_eq!(
        (mood.namespace.as_str(), mood.name.as_str()),
        ("public", "mood")
    );
    let Message::Relation(items) = &messages[2].1 else {
        panic!("expected relation")
    };
    assert_eq!(items.name, "items");
    let names: Vec<&str> = items.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["id", "name", "qty", "m", "at", "flag", "raw", "note", "big"]
    );
    assert_eq!(items.columns[3].type_id, mood.type_id);

    let Message::Insert(first) = &messages[3].1 else {
        panic!("expected insert")
    };
    assert_eq!(first.relation_id, items.relation_id);
    // 2024-01-01 00:01:00 UTC in microseconds since 2000-01-01.
    let at = (8766 * 86_400 + 60) * 1_000_000i64;
    let t = "t".repeat(3000);
    let expected = [
        ColumnRef::Binary(&1i64.to_be_bytes()),
        ColumnRef::Binary(b"item 1"),
        ColumnRef::Binary(&10i32.to_be_bytes()),
        ColumnRef::Binary(b"ok"),
        ColumnRef::Binary(&at.to_be_bytes()),
        ColumnRef::Binary(&[0]),
        ColumnRef::Binary(&[1, 2]),
        ColumnRef::Null,
        ColumnRef::Binary(t.as_bytes()),
    ];
    assert_eq!(first.new.iter().collect::<Vec<_>>(), expected);

    // Row 1 keeps its TOASTed `big` through an update of qty: the value is not sent.
    let Some((_, Message::Update(update))) = messages
        .iter()
        .find(|(_, m)| matches!(m, Message::Update(_)))
    else {
        panic!("no update")
    };
    assert_eq!(update.old, None);
    assert_eq!(
        update.new.get(2),
        Some(ColumnRef::Binary(&11i32.to_be_bytes()))
    );
    assert!(update.new.get(8).unwrap().is_unchanged_toast());
}

#[test]
fn streamed_transaction_carries_its_xid() {
    let messages = decode_all();
    let starts: Vec<&StreamStart> = messages
        .iter()
        .filter_map(|(_, m)| match m {
            Message::StreamStart(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(starts[0].first_segment && !starts[1].first_segment);
    let xid = starts[0].xid;
    let mut in_stream = false;
    let mut streamed_inserts = 0;
    for (_, m) in &messages {
        match m {
            Message::StreamStart(_) => in_stream = true,
            Message::StreamStop => in_stream = false,
            Message::Insert(i) => {
                assert_eq!(i.xid, in_stream.then_some(xid));
                streamed_inserts += usize::from(in_stream);
            }
            Message::Logical(lm) if lm.transactional() => {
                assert_eq!(
                    (lm.xid, lm.content.as_ref()),
                    (Some(xid), &b"batch done"[..])
                );
            }
            Message::Logical(lm) => {
                assert_eq!((lm.xid, lm.content.as_ref()), (None, &b"checkpoint"[..]));
            }
            Message::StreamCommit(c) => assert_eq!(c.xid, xid),
            _ => {}
        }
    }
    assert_eq!(streamed_inserts, 250);
}
