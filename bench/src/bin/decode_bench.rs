//! Single-thread throughput of `pgwarp-decoder` on synthesized pgoutput streams.
//!
//! Two workloads, built with the decoder's own encoder from realistic shapes (binary mode):
//!
//! * `insert`: transactions of Begin, 100 Inserts of an 8-column row (int4, int8, two ~30-byte
//!   texts, timestamptz, float8, bool, a NULL), Commit;
//! * `mixed`: Begin, 40 Inserts, 30 Updates (a third with an old key, a third with an unchanged
//!   TOAST column), 20 Deletes, a Truncate-free logical message, Commit.
//!
//! Each frame is its own `Bytes` (a slice of one large buffer, as frames are slices of the
//! connection's read buffer in the engine). Every mode decodes all frames with one `Decoder`:
//!
//! * `decode`: decode only (validation of every column, no access to values);
//! * `decode+iter`: decode and walk every column with `TupleData::iter` (borrowed slices);
//! * `decode+values`: decode and collect `TupleData::to_values` (a `Vec<ColumnValue>` per tuple
//!   with one reference count per column: the cost of the per-column-allocation design);
//! * `copydata+iter`: the same frames wrapped in XLogData, through `Decoder::decode_copy_data`.
//!
//! Run: `cargo run --release -p pgwarp-bench --bin decode_bench [-- --transactions N --rounds R]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use pgwarp_decoder::{
    Begin, ColumnRef, Commit, Decoder, Delete, Insert, LogicalMessage, Lsn, Message, OldTuple,
    PgTimestamp, ProtocolVersion, Relation, RelationColumn, ReplicaIdentity, ReplicationMessage,
    StreamEvent, TupleData, Update, XLogData,
};

#[derive(Parser)]
#[command(about = "Single-thread pgoutput decoding throughput")]
struct Args {
    /// Transactions per workload (insert: 102 messages each; mixed: 93 each).
    #[arg(long, default_value_t = 10_000)]
    transactions: usize,
    /// Timed rounds per mode; the best is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Deterministic xorshift so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| b'a' + (self.next() % 26) as u8).collect()
    }
}

const REL: u32 = 16384;

fn relation() -> Message {
    let col = |name: &str, type_id: u32, key: bool| RelationColumn {
        flags: u8::from(key),
        name: name.into(),
        type_id,
        type_modifier: -1,
    };
    Message::Relation(Relation {
        xid: None,
        relation_id: REL,
        namespace: "public".into(),
        name: "events".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            col("id", 20, true),
            col("tenant", 23, false),
            col("name", 25, false),
            col("note", 25, false),
            col("created_at", 1184, false),
            col("score", 701, false),
            col("active", 16, false),
            col("extra", 25, false),
        ],
    })
}

/// A binary-mode row of the `events` table; `toast` leaves `note` unchanged.
fn row(rng: &mut Rng, id: u64, toast: bool) -> Result<TupleData> {
    let tenant = ((rng.next() % 1000) as u32).to_be_bytes();
    let name_len = 28 + (rng.next() % 5) as usize;
    let name = rng.text(name_len);
    let note = rng.text(30);
    let ts = (800_000_000_000_000 + (rng.next() % 1_000_000_000) as i64).to_be_bytes();
    let score = (rng.next() as f64 / 1e10).to_be_bytes();
    let id = id.to_be_bytes();
    let cols = [
        ColumnRef::Binary(&id),
        ColumnRef::Binary(&tenant),
        ColumnRef::Binary(&name),
        if toast {
            ColumnRef::UnchangedToast
        } else {
            ColumnRef::Binary(&note)
        },
        ColumnRef::Binary(&ts),
        ColumnRef::Binary(&score),
        ColumnRef::Binary(&[1]),
        ColumnRef::Null,
    ];
    Ok(TupleData::from_values(cols)?)
}

fn key(id: u64) -> Result<TupleData> {
    let id = id.to_be_bytes();
    let cols = [ColumnRef::Binary(&id)]
        .into_iter()
        .chain(std::iter::repeat_n(ColumnRef::Null, 7));
    Ok(TupleData::from_values(cols)?)
}

/// Builds the workload as one buffer of frames plus their boundaries.
fn synthesize(mixed: bool, transactions: usize) -> Result<Vec<Bytes>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut messages = vec![relation()];
    let mut lsn = 0x1_0000_0000u64;
    let mut id = 0u64;
    for xid in 0..transactions as u32 {
        let commit_time = PgTimestamp(800_000_000_000_000 + i64::from(xid));
        messages.push(Message::Begin(Begin {
            final_lsn: Lsn(lsn + 20_000),
            commit_time,
            xid: 1000 + xid,
        }));
        if mixed {
            for _ in 0..40 {
                id += 1;
                let new = row(&mut rng, id, false)?;
                messages.push(Message::Insert(Insert {
                    xid: None,
                    relation_id: REL,
                    new,
                }));
            }
            for i in 0..30u64 {
                let target = id.saturating_sub(rng.next() % 40);
                let old = if i % 3 == 0 {
                    Some(OldTuple::Key(key(target + 1)?))
                } else {
                    None
                };
                let new = row(&mut rng, target, i % 3 == 1)?;
                messages.push(Message::Update(Update {
                    xid: None,
                    relation_id: REL,
                    old,
                    new,
                }));
            }
            for _ in 0..20 {
                let old = OldTuple::Key(key(id.saturating_sub(rng.next() % 40))?);
                messages.push(Message::Delete(Delete {
                    xid: None,
                    relation_id: REL,
                    old,
                }));
            }
            messages.push(Message::Logical(LogicalMessage {
                xid: None,
                flags: 1,
                lsn: Lsn(lsn + 100),
                prefix: "pgwarp".into(),
                content: Bytes::from(rng.text(40)),
            }));
        } else {
            for _ in 0..100 {
                id += 1;
                let new = row(&mut rng, id, false)?;
                messages.push(Message::Insert(Insert {
                    xid: None,
                    relation_id: REL,
                    new,
                }));
            }
        }
        messages.push(Message::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(lsn + 20_000),
            end_lsn: Lsn(lsn + 20_056),
            commit_time,
        }));
        lsn += 20_056;
    }
    let mut buf = BytesMut::new();
    let mut ends = Vec::with_capacity(messages.len());
    for m in &messages {
        m.encode(&mut buf)?;
        ends.push(buf.len());
    }
    let all = buf.freeze();
    let mut start = 0;
    Ok(ends
        .into_iter()
        .map(|end| {
            let frame = all.slice(start..end);
            start = end;
            frame
        })
        .collect())
}

fn wrap_xlog(frames: &[Bytes]) -> Vec<Bytes> {
    let mut buf = BytesMut::new();
    let mut ends = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        ReplicationMessage::XLogData(XLogData {
            wal_start: Lsn(i as u64 * 100),
            wal_end: Lsn(i as u64 * 100 + 50),
            send_time: PgTimestamp(i as i64),
            data: f.clone(),
        })
        .encode(&mut buf);
        ends.push(buf.len());
    }
    let all = buf.freeze();
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let f = all.slice(start..end);
            start = end;
            f
        })
        .collect()
}

/// Sums column lengths the way a consumer touches every value.
#[inline]
fn touch(t: &TupleData) -> usize {
    t.iter().map(|c| c.bytes().map_or(1, <[u8]>::len)).sum()
}

fn consume(m: &Message, mode: &str) -> usize {
    let tuples: [Option<&TupleData>; 2] = match m {
        Message::Insert(i) => [Some(&i.new), None],
        Message::Update(u) => [u.old.as_ref().map(OldTuple::tuple), Some(&u.new)],
        Message::Delete(d) => [Some(d.old.tuple()), None],
        _ => [None, None],
    };
    tuples
        .into_iter()
        .flatten()
        .map(|t| match mode {
            "decode+values" => black_box(t.to_values()).len(),
            "decode" => t.len(),
            _ => touch(t),
        })
        .sum()
}

fn run(frames: &[Bytes], mode: &str) -> Result<usize> {
    let mut decoder = Decoder::new(ProtocolVersion::V1);
    let mut acc = 0usize;
    if mode == "copydata+iter" {
        for f in frames {
            match decoder.decode_copy_data(f).context("decoding")? {
                StreamEvent::Message { message, .. } => acc += consume(&message, mode),
                StreamEvent::Keepalive(_) => {}
            }
        }
    } else {
        for f in frames {
            let m = decoder.decode(f).context("decoding")?;
            acc += consume(&m, mode);
        }
    }
    Ok(acc)
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "pgwarp-decoder single-thread throughput (best of {} rounds)",
        args.rounds
    );
    println!(
        "{:<8} {:<15} {:>10} {:>9} {:>10} {:>11} {:>8}",
        "workload", "mode", "messages", "MB", "MB/s", "msg/s", "ns/msg"
    );
    for (name, mixed) in [("insert", false), ("mixed", true)] {
        let frames = synthesize(mixed, args.transactions)?;
        let wrapped = wrap_xlog(&frames);
        for mode in ["decode", "decode+iter", "decode+values", "copydata+iter"] {
            let input = if mode == "copydata+iter" {
                &wrapped
            } else {
                &frames
            };
            let bytes: usize = input.iter().map(Bytes::len).sum();
            let mut best = Duration::MAX;
            for _ in 0..args.rounds.max(1) {
                let t = Instant::now();
                black_box(run(black_box(input), mode)?);
                best = best.min(t.elapsed());
            }
            let secs = best.as_secs_f64();
            println!(
                "{:<8} {:<15} {:>10} {:>9.1} {:>10.0} {:>11.0} {:>8.1}",
                name,
                mode,
                input.len(),
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / secs,
                input.len() as f64 / secs,
                secs * 1e9 / input.len() as f64,
            );
        }
    }
    Ok(())
}
