//! Writes the fuzz seed corpus, `decoder/fuzz/corpus/<target>/<name>`, from the encoder.
//!
//! Run from the repository root: `cargo run -p pgwarp-decoder --example fuzz_seeds`. It rewrites
//! the named seeds (files the fuzzer added under other names are left alone). Every message kind
//! appears in each context it can occur in; the captures in `decoder/testdata/` add real server
//! output.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use pgwarp_decoder::capture::CaptureReader;
use pgwarp_decoder::*;

type Sample = (&'static str, ProtocolVersion, bool, Message);

fn tuple(cols: &[ColumnRef<'_>]) -> TupleData {
    TupleData::from_values(cols.iter().copied()).expect("small tuple")
}

fn samples() -> Vec<Sample> {
    use ProtocolVersion::*;
    let lsn = Lsn(0x16B3748);
    let end = Lsn(0x16B3800);
    let t = PgTimestamp(800_000_000_000_000);
    let row = tuple(&[
        ColumnRef::Binary(&[0, 0, 0, 0, 0, 0, 0, 42]),
        ColumnRef::Text(b"hello"),
        ColumnRef::Null,
        ColumnRef::UnchangedToast,
    ]);
    let key = tuple(&[
        ColumnRef::Binary(&[0, 0, 0, 0, 0, 0, 0, 42]),
        ColumnRef::Null,
    ]);
    let gid = || "pgwarp-gid".to_string();
    let prepare = Prepare {
        flags: 0,
        prepare_lsn: lsn,
        end_lsn: end,
        prepare_time: t,
        xid: 753,
        gid: gid(),
    };
    let changes = |xid: Option<u32>| -> Vec<(&'static str, Message)> {
        vec![
            (
                "relation",
                Message::Relation(Relation {
                    xid,
                    relation_id: 16384,
                    namespace: "public".into(),
                    name: "orders".into(),
                    replica_identity: ReplicaIdentity::Default,
                    columns: vec![
                        RelationColumn {
                            flags: 1,
                            name: "id".into(),
                            type_id: 20,
                            type_modifier: -1,
                        },
                        RelationColumn {
                            flags: 0,
                            name: "note".into(),
                            type_id: 25,
                            type_modifier: -1,
                        },
                    ],
                }),
            ),
            (
                "type",
                Message::Type(Type {
                    xid,
                    type_id: 16400,
                    namespace: "public".into(),
                    name: "mood".into(),
                }),
            ),
            (
                "insert",
                Message::Insert(Insert {
                    xid,
                    relation_id: 16384,
                    new: row.clone(),
                }),
            ),
            (
                "update_plain",
                Message::Update(Update {
                    xid,
                    relation_id: 16384,
                    old: None,
                    new: row.clone(),
                }),
            ),
            (
                "update_key",
                Message::Update(Update {
                    xid,
                    relation_id: 16384,
                    old: Some(OldTuple::Key(key.clone())),
                    new: row.clone(),
                }),
            ),
            (
                "update_full",
                Message::Update(Update {
                    xid,
                    relation_id: 16384,
                    old: Some(OldTuple::Full(row.clone())),
                    new: row.clone(),
                }),
            ),
            (
                "delete_key",
                Message::Delete(Delete {
                    xid,
                    relation_id: 16384,
                    old: OldTuple::Key(key.clone()),
                }),
            ),
            (
                "delete_full",
                Message::Delete(Delete {
                    xid,
                    relation_id: 16384,
                    old: OldTuple::Full(row.clone()),
                }),
            ),
            (
                "truncate",
                Message::Truncate(Truncate {
                    xid,
                    options: 3,
                    relation_ids: vec![16384, 16385],
                }),
            ),
            (
                "message",
                Message::Logical(LogicalMessage {
                    xid,
                    flags: 1,
                    lsn,
                    prefix: "pgwarp".into(),
                    content: Bytes::from_static(b"content"),
                }),
            ),
            (
                "origin",
                Message::Origin(Origin {
                    commit_lsn: lsn,
                    name: "pg_1".into(),
                }),
            ),
        ]
    };
    let mut out: Vec<Sample> = Vec::new();
    for (name, m) in changes(None) {
        out.push((name, V1, false, m));
    }
    for (name, m) in changes(Some(753)) {
        out.push((name, V2, true, m));
    }
    let boundary: Vec<(&'static str, ProtocolVersion, Message)> = vec![
        (
            "begin",
            V1,
            Message::Begin(Begin {
                final_lsn: end,
                commit_time: t,
                xid: 753,
            }),
        ),
        (
            "commit",
            V1,
            Message::Commit(Commit {
                flags: 0,
                commit_lsn: lsn,
                end_lsn: end,
                commit_time: t,
            }),
        ),
        (
            "stream_start",
            V2,
            Message::StreamStart(StreamStart {
                xid: 753,
                first_segment: true,
            }),
        ),
        (
            "stream_commit",
            V2,
            Message::StreamCommit(StreamCommit {
                xid: 753,
                flags: 0,
                commit_lsn: lsn,
                end_lsn: end,
                commit_time: t,
            }),
        ),
        (
            "stream_abort",
            V2,
            Message::StreamAbort(StreamAbort {
                xid: 753,
                subxid: 754,
                parallel: None,
            }),
        ),
        (
            "stream_abort_parallel",
            V4,
            Message::StreamAbort(StreamAbort {
                xid: 753,
                subxid: 754,
                parallel: Some(AbortInfo {
                    abort_lsn: lsn,
                    abort_time: t,
                }),
            }),
        ),
        (
            "begin_prepare",
            V3,
            Message::BeginPrepare(BeginPrepare {
                prepare_lsn: lsn,
                end_lsn: end,
                prepare_time: t,
                xid: 753,
                gid: gid(),
            }),
        ),
        ("prepare", V3, Message::Prepare(prepare.clone())),
        ("stream_prepare", V3, Message::StreamPrepare(prepare)),
        (
            "commit_prepared",
            V3,
            Message::CommitPrepared(CommitPrepared {
                flags: 0,
                commit_lsn: lsn,
                end_lsn: end,
                commit_time: t,
                xid: 753,
                gid: gid(),
            }),
        ),
        (
            "rollback_prepared",
            V3,
            Message::RollbackPrepared(RollbackPrepared {
                flags: 0,
                prepare_end_lsn: lsn,
                rollback_end_lsn: end,
                prepare_time: t,
                rollback_time: t,
                xid: 753,
                gid: gid(),
            }),
        ),
    ];
    for (name, v, m) in boundary {
        out.push((name, v, false, m));
    }
    out.push(("stream_stop", V2, true, Message::StreamStop));
    out
}

fn xlog(wal_start: Lsn, data: Bytes) -> Bytes {
    let mut buf = BytesMut::new();
    ReplicationMessage::XLogData(XLogData {
        wal_start,
        wal_end: Lsn(0x16B3800),
        send_time: PgTimestamp(800_000_000_000_000),
        data,
    })
    .encode(&mut buf);
    buf.freeze()
}

fn stream_file(version: ProtocolVersion, payloads: &[Bytes]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_u8((version.as_u32() - 1) as u8);
    for p in payloads {
        buf.put_u32(p.len() as u32);
        buf.put_slice(p);
    }
    buf.to_vec()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(name), bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("fuzz/corpus");
    let samples = samples();
    let mut count = 0;

    let msg_dir = corpus.join("pgoutput_message");
    for (name, version, in_stream, m) in &samples {
        let selector = (version.as_u32() - 1) as u8 | if *in_stream { 4 } else { 0 };
        let ctx = if *in_stream { "_streamed" } else { "" };
        let mut bytes = vec![selector];
        bytes.extend_from_slice(&m.to_bytes()?);
        write(
            &msg_dir,
            &format!("{name}{ctx}_v{}", version.as_u32()),
            &bytes,
        )?;
        count += 1;
    }

    let frame_dir = corpus.join("replication_frame");
    let insert = &samples
        .iter()
        .find(|s| s.0 == "insert")
        .ok_or("no insert sample")?
        .3;
    write(
        &frame_dir,
        "xlog_data_insert",
        &xlog(Lsn(0x16B3748), insert.to_bytes()?),
    )?;
    let mut k = BytesMut::new();
    ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
        wal_end: Lsn(0x16B3800),
        send_time: PgTimestamp(800_000_000_000_000),
        reply_requested: true,
    })
    .encode(&mut k);
    write(&frame_dir, "keepalive", &k)?;
    let mut r = BytesMut::new();
    StandbyStatusUpdate {
        write_lsn: Lsn(0x16B3800),
        flush_lsn: Lsn(0x16B3748),
        apply_lsn: Lsn(0x16B3748),
        client_time: PgTimestamp(800_000_000_000_000),
        reply_requested: false,
    }
    .encode(&mut r);
    write(&frame_dir, "standby_status_update", &r)?;
    count += 3;

    // Whole transactions through the stateful decoder.
    let stream_dir = corpus.join("copy_data_stream");
    let pick = |name: &str, streamed: bool| -> Result<Bytes, Box<dyn std::error::Error>> {
        let s = samples
            .iter()
            .find(|s| s.0 == name && s.2 == streamed)
            .ok_or(format!("no sample {name}"))?;
        Ok(xlog(Lsn(0x16B3748), s.3.to_bytes()?))
    };
    let plain: Vec<Bytes> = [
        "begin",
        "relation",
        "type",
        "insert",
        "update_key",
        "update_full",
        "delete_key",
        "truncate",
        "message",
        "commit",
    ]
    .iter()
    .map(|n| pick(n, false))
    .collect::<Result<_, _>>()?;
    write(
        &stream_dir,
        "transaction_v1",
        &stream_file(ProtocolVersion::V1, &plain),
    )?;
    let mut streamed = vec![pick("stream_start", false)?];
    for n in [
        "relation",
        "insert",
        "update_plain",
        "delete_full",
        "truncate",
        "message",
        "origin",
    ] {
        streamed.push(pick(n, true)?);
    }
    streamed.push(pick("stream_stop", true)?);
    streamed.push(Bytes::from(k.to_vec()));
    streamed.push(pick("stream_abort_parallel", false)?);
    streamed.push(pick("stream_commit", false)?);
    write(
        &stream_dir,
        "streamed_transaction_v4",
        &stream_file(ProtocolVersion::V4, &streamed),
    )?;
    let two_phase: Vec<Bytes> = [
        "begin_prepare",
        "insert",
        "prepare",
        "commit_prepared",
        "rollback_prepared",
    ]
    .iter()
    .map(|n| pick(n, false))
    .collect::<Result<_, _>>()?;
    write(
        &stream_dir,
        "two_phase_v3",
        &stream_file(ProtocolVersion::V3, &two_phase),
    )?;
    count += 3;

    // Real server output: the first messages of each capture, as one stream seed per file.
    let testdata = root.join("testdata");
    if let Ok(entries) = fs::read_dir(&testdata) {
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "bin") {
                continue;
            }
            let reader = CaptureReader::new(Bytes::from(fs::read(&path)?))?;
            let version = reader.version();
            let payloads: Vec<Bytes> = reader
                .take(64)
                .map(|r| r.map(|(lsn, m)| xlog(lsn, m)))
                .collect::<Result<_, _>>()?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("capture");
            write(
                &stream_dir,
                &format!("capture_{stem}"),
                &stream_file(version, &payloads),
            )?;
            count += 1;
        }
    }
    println!("wrote {count} seeds under {}", corpus.display());
    Ok(())
}
