//! Helpers shared by the `source_*` integration tests: connection settings that ignore the
//! developer's own `PG*` environment, and a reader that decodes a replication stream into the
//! ids it inserted.
#![allow(dead_code)]

use std::collections::BTreeMap;

use pgwarp::conn::ConnConfig;
use pgwarp::conn::env::FixedEnv;
use pgwarp::source::{ReplicationStream, SourceError};
use pgwarp_decoder::{ColumnRef, Decoder, Lsn, Message, ReplicationMessage};

/// Settings from a connection string, resolved against an empty environment (OS user
/// `postgres`), so the test does not depend on the machine's `PGHOST`, `~/.pgpass` etc.
pub fn config(conn_string: &str) -> ConnConfig {
    ConnConfig::parse_with_env(conn_string, &FixedEnv::with_user("postgres"))
        .unwrap_or_else(|e| panic!("invalid test connection string {conn_string:?}: {e}"))
}

/// A bigint column in binary (8 bytes, big-endian) or text format.
pub fn int8(col: ColumnRef<'_>) -> i64 {
    match col {
        ColumnRef::Binary(b) => i64::from_be_bytes(b.try_into().expect("8-byte int8")),
        ColumnRef::Text(t) => std::str::from_utf8(t).unwrap().parse().unwrap(),
        other => panic!("expected a bigint value, got {other:?}"),
    }
}

/// What a stream delivered, transaction by transaction.
#[derive(Debug, Default)]
pub struct Received {
    /// Inserted ids (first column), in stream order.
    pub ids: Vec<i64>,
    /// For each commit: its end LSN and the ids inserted in that transaction.
    pub transactions: Vec<(Lsn, Vec<i64>)>,
    /// Keepalives seen: their WAL end positions.
    pub keepalive_ends: Vec<Lsn>,
    /// Inserts per relation name.
    pub per_relation: BTreeMap<String, usize>,
}

/// Reads the stream, decoding every message, until a logical message with `prefix` arrives
/// (emit it with `pg_logical_emit_message(true, prefix, '')` after the changes to wait for).
pub async fn read_until_marker(
    stream: &mut ReplicationStream,
    decoder: &mut Decoder,
    prefix: &str,
) -> Result<Received, SourceError> {
    let mut received = Received::default();
    let mut current: Vec<i64> = Vec::new();
    let mut relations: BTreeMap<u32, String> = BTreeMap::new();
    loop {
        let Some(message) = stream.next().await? else {
            panic!("stream ended before marker {prefix:?}");
        };
        match message {
            ReplicationMessage::PrimaryKeepalive(k) => received.keepalive_ends.push(k.wal_end),
            ReplicationMessage::XLogData(w) => {
                match decoder
                    .decode_at(&w.data, w.wal_start)
                    .expect("valid pgoutput")
                {
                    Message::Relation(r) => {
                        relations.insert(r.relation_id, r.name.clone());
                    }
                    Message::Insert(i) => {
                        let id = int8(i.new.get(0).expect("a first column"));
                        current.push(id);
                        received.ids.push(id);
                        let name = relations.get(&i.relation_id).cloned().unwrap_or_default();
                        *received.per_relation.entry(name).or_default() += 1;
                    }
                    Message::Commit(c) => {
                        received
                            .transactions
                            .push((c.end_lsn, std::mem::take(&mut current)));
                    }
                    Message::Logical(m) if m.prefix == prefix => return Ok(received),
                    _ => {}
                }
            }
        }
    }
}
