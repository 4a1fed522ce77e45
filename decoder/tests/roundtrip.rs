//! Property tests: every message kind, in every protocol version and stream context where it can
//! appear, survives encode → decode unchanged; random and mutated frames never panic, and any
//! frame the decoder accepts re-encodes to exactly the same bytes.

use bytes::{Bytes, BytesMut};
use pgwarp_decoder::*;
use proptest::prelude::*;

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn time() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

/// A string PostgreSQL could send: any UTF-8 without NUL.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,20}",
        any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
}

fn column() -> impl Strategy<Value = ColumnValue> {
    prop_oneof![
        Just(ColumnValue::Null),
        Just(ColumnValue::UnchangedToast),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| ColumnValue::Text(v.into())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| ColumnValue::Binary(v.into())),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData> {
    proptest::collection::vec(column(), 0..12).prop_map(|cols| {
        TupleData::from_values(cols.iter().map(ColumnValue::as_ref)).expect("small tuple")
    })
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

/// Messages that may appear inside a stream segment (their xid is present iff `in_stream`).
fn change(in_stream: bool) -> BoxedStrategy<Message> {
    let xid = if in_stream {
        any::<u32>().prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    let rel_column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_id, type_modifier)| RelationColumn {
            flags,
            name,
            type_id,
            type_modifier,
        },
    );
    prop_oneof![
        (
            xid.clone(),
            any::<u32>(),
            name(),
            name(),
            replica_identity(),
            proptest::collection::vec(rel_column, 0..8)
        )
            .prop_map(
                |(xid, relation_id, namespace, name, replica_identity, columns)| {
                    Message::Relation(Relation {
                        xid,
                        relation_id,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    })
                }
            ),
        (xid.clone(), any::<u32>(), name(), name()).prop_map(|(xid, type_id, namespace, name)| {
            Message::Type(Type {
                xid,
                type_id,
                namespace,
                name,
            })
        }),
        (xid.clone(), any::<u32>(), tuple()).prop_map(|(xid, relation_id, new)| Message::Insert(
            Insert {
                xid,
                relation_id,
                new
            }
        )),
        (
            xid.clone(),
            any::<u32>(),
            proptest::option::of(old_tuple()),
            tuple()
        )
            .prop_map(|(xid, relation_id, old, new)| Message::Update(Update {
                xid,
                relation_id,
                old,
                new
            })),
        (xid.clone(), any::<u32>(), old_tuple()).prop_map(|(xid, relation_id, old)| {
            Message::Delete(Delete {
                xid,
                relation_id,
                old,
            })
        }),
        (
            xid.clone(),
            any::<u8>(),
            proptest::collection::vec(any::<u32>(), 0..6)
        )
            .prop_map(|(xid, options, relation_ids)| Message::Truncate(Truncate {
                xid,
                options,
                relation_ids
            })),
        (
            xid,
            any::<u8>(),
            lsn(),
            name(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(xid, flags, lsn, prefix, content)| Message::Logical(
                LogicalMessage {
                    xid,
                    flags,
                    lsn,
                    prefix,
                    content: content.into()
                }
            )),
        (lsn(), name()).prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
    ]
    .boxed()
}

/// Messages that only appear outside stream segments, for `version`.
fn boundary(version: ProtocolVersion) -> BoxedStrategy<Message> {
    let v1 = prop_oneof![
        (lsn(), time(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
            Message::Begin(Begin {
                final_lsn,
                commit_time,
                xid,
            })
        }),
        (any::<u8>(), lsn(), lsn(), time()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time)| {
                Message::Commit(Commit {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                })
            }
        ),
    ];
    let parallel = if version >= ProtocolVersion::V4 {
        proptest::option::of(
            (lsn(), time()).prop_map(|(abort_lsn, abort_time)| AbortInfo {
                abort_lsn,
                abort_time,
            }),
        )
        .boxed()
    } else {
        Just(None).boxed()
    };
    let v2 = prop_oneof![
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
            Message::StreamStart(StreamStart { xid, first_segment })
        }),
        (any::<u32>(), any::<u8>(), lsn(), lsn(), time()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_time)| Message::StreamCommit(StreamCommit {
                xid,
                flags,
                commit_lsn,
                end_lsn,
                commit_time
            })
        ),
        (any::<u32>(), any::<u32>(), parallel).prop_map(|(xid, subxid, parallel)| {
            Message::StreamAbort(StreamAbort {
                xid,
                subxid,
                parallel,
            })
        }),
    ];
    let prepare = (any::<u8>(), lsn(), lsn(), time(), any::<u32>(), name())
        .prop_map(
            |(flags, prepare_lsn, end_lsn, prepare_time, xid, gid)| Prepare {
                flags,
                prepare_lsn,
                end_lsn,
                prepare_time,
                xid,
                gid,
            },
        )
        .boxed();
    let v3 = prop_oneof![
        (lsn(), lsn(), time(), any::<u32>(), name()).prop_map(
            |(prepare_lsn, end_lsn, prepare_time, xid, gid)| Message::BeginPrepare(BeginPrepare {
                prepare_lsn,
                end_lsn,
                prepare_time,
                xid,
                gid
            })
        ),
        prepare.clone().prop_map(Message::Prepare),
        prepare.prop_map(Message::StreamPrepare),
        (any::<u8>(), lsn(), lsn(), time(), any::<u32>(), name()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time, xid, gid)| {
                Message::CommitPrepared(CommitPrepared {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                    xid,
                    gid,
                })
            }
        ),
        (
            any::<u8>(),
            lsn(),
            lsn(),
            time(),
            time(),
            any::<u32>(),
            name()
        )
            .prop_map(
                |(
                    flags,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_time,
                    rollback_time,
                    xid,
                    gid,
                )| {
                    Message::RollbackPrepared(RollbackPrepared {
                        flags,
                        prepare_end_lsn,
                        rollback_end_lsn,
                        prepare_time,
                        rollback_time,
                        xid,
                        gid,
                    })
                }
            ),
    ];
    match version {
        ProtocolVersion::V1 => v1.boxed(),
        ProtocolVersion::V2 => prop_oneof![v1, v2].boxed(),
        _ => prop_oneof![v1, v2, v3].boxed(),
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V1),
        Just(ProtocolVersion::V2),
        Just(ProtocolVersion::V3),
        Just(ProtocolVersion::V4),
    ]
}

/// A context and a message valid in it.
fn message_in_context() -> impl Strategy<Value = (DecodeContext, Message)> {
    (version(), any::<bool>()).prop_flat_map(|(version, in_stream)| {
        let in_stream = in_stream && version >= ProtocolVersion::V2;
        let ctx = DecodeContext { version, in_stream };
        let message = if in_stream {
            prop_oneof![change(true), Just(Message::StreamStop)].boxed()
        } else {
            prop_oneof![change(false), boundary(version)].boxed()
        };
        (Just(ctx), message)
    })
}

/// Decodes `frame`; if accepted, it must re-encode to the same bytes.
fn check_canonical(frame: &Bytes, ctx: DecodeContext) {
    if let Ok(m) = decode_message(frame, ctx) {
        assert_eq!(m.to_bytes().unwrap(), *frame, "{m:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_decode_round_trip((ctx, message) in message_in_context()) {
        let bytes = message.to_bytes().unwrap();
        prop_assert_eq!(decode_message(&bytes, ctx), Ok(message.clone()));
        // The same frame through the XLogData framing and the stateful decoder.
        let mut payload = BytesMut::new();
        ReplicationMessage::XLogData(XLogData {
            wal_start: Lsn(1),
            wal_end: Lsn(2),
            send_time: PgTimestamp(3),
            data: bytes.clone(),
        })
        .encode(&mut payload);
        let mut decoder = Decoder::new(ctx.version);
        if ctx.in_stream {
            decoder.decode(&Message::StreamStart(StreamStart { xid: 1, first_segment: true })
                .to_bytes().unwrap()).unwrap();
        }
        let event = decoder.decode_copy_data(&payload.freeze()).unwrap();
        prop_assert_eq!(event, StreamEvent::Message {
            wal_start: Lsn(1), wal_end: Lsn(2), send_time: PgTimestamp(3), message,
        });
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_valid_message(
        (ctx, message) in message_in_context()
    ) {
        let bytes = message.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            check_canonical(&bytes.slice(..cut), ctx);
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        (ctx, message) in message_in_context(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = message.to_bytes().unwrap().to_vec();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        check_canonical(&Bytes::from(bytes), ctx);
    }

    #[test]
    fn random_frames_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        version in version(),
        in_stream in any::<bool>(),
    ) {
        let frame = Bytes::from(bytes);
        check_canonical(&frame, DecodeContext { version, in_stream });
        let mut decoder = Decoder::new(version);
        let _ = decoder.decode_copy_data(&frame);
        if let Ok(m) = ReplicationMessage::decode(&frame) {
            let mut out = BytesMut::new();
            m.encode(&mut out);
            prop_assert_eq!(out.freeze(), frame);
        }
    }

    #[test]
    fn standby_status_update_round_trip(
        write in lsn(), flush in lsn(), apply in lsn(), t in time(), reply in any::<bool>()
    ) {
        let update = StandbyStatusUpdate {
            write_lsn: write, flush_lsn: flush, apply_lsn: apply, client_time: t, reply_requested: reply,
        };
        let mut buf = BytesMut::new();
        update.encode(&mut buf);
        prop_assert_eq!(buf.len(), StandbyStatusUpdate::LEN);
        prop_assert_eq!(StandbyStatusUpdate::decode(&buf), Ok(update));
    }

    #[test]
    fn keepalive_round_trip(end in lsn(), t in time(), reply in any::<bool>()) {
        let k = ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
            wal_end: end, send_time: t, reply_requested: reply,
        });
        let mut buf = BytesMut::new();
        k.encode(&mut buf);
        prop_assert_eq!(ReplicationMessage::decode(&buf.freeze()), Ok(k));
    }
}
