//! Helpers shared by the `sink_*` integration tests.
//!
//! Real changes come from a real source: [`Source`] runs SQL in its own database, reads what a
//! logical slot (`pgoutput`, binary or text) emitted for it, and decodes it with the project's
//! decoder. [`Mapper`] is a miniature engine for a plain PostgreSQL target: it turns decoded
//! messages into the sink's [`Change`]s, one shard per table (the table itself).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use pgwarp_decoder::{
    DecodeContext, Lsn, Message, ProtocolVersion, ReplicaIdentity, Truncate, decode_message,
};
use pgwarp_sink::{
    Change, Connector, NoTlsConnector, NodeBatch, NodeWriter, Row, Shard, ShardTarget, TargetTable,
    WriterConfig,
};
use pgwarp_tests::{PgServer, TestDb, unique_name};

/// A source database with a publication for all tables and a logical slot.
pub struct Source {
    pub db: TestDb,
    pub slot: String,
    pub binary: bool,
}

/// One decoded source transaction.
#[derive(Debug, Clone)]
pub struct Txn {
    pub commit_lsn: Lsn,
    pub messages: Vec<Message>,
}

impl Source {
    /// Creates the database, runs `ddl`, then creates the publication and the slot.
    pub fn new(prefix: &str, ddl: &str, binary: bool) -> Source {
        let db = PgServer::shared()
            .create_database(prefix)
            .expect("create source database");
        // Logical decoding only reads flushed WAL; the harness turns synchronous_commit off.
        db.execute(&format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit TO on",
            db.name()
        ))
        .expect("synchronous_commit");
        db.execute(ddl).expect("source ddl");
        let slot = unique_name("sink_slot");
        db.execute("CREATE PUBLICATION sink_pub FOR ALL TABLES")
            .expect("publication");
        db.query_rows(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .expect("create slot");
        Source { db, slot, binary }
    }

    /// Runs statements on the source (one implicit transaction unless they say otherwise).
    pub fn exec(&self, sql: &str) {
        self.db
            .execute(sql)
            .unwrap_or_else(|e| panic!("source sql failed: {e}\n{sql}"));
    }

    /// Consumes what the slot has and decodes it into transactions.
    pub async fn changes(&self) -> Vec<Txn> {
        let client = self.db.connect().await.expect("connect to source");
        let rows = client
            .query(
                "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, \
                 'proto_version', '1', 'publication_names', 'sink_pub', 'binary', $2)",
                &[&self.slot, &if self.binary { "true" } else { "false" }],
            )
            .await
            .expect("read slot");
        let mut txns = Vec::new();
        let mut current = Vec::new();
        for row in rows {
            let data: Vec<u8> = row.get(0);
            let msg = decode_message(&Bytes::from(data), DecodeContext::new(ProtocolVersion::V1))
                .expect("decode pgoutput");
            match msg {
                Message::Begin(_) => current.clear(),
                Message::Commit(c) => txns.push(Txn {
                    commit_lsn: c.commit_lsn,
                    messages: std::mem::take(&mut current),
                }),
                m => current.push(m),
            }
        }
        txns
    }

    /// Drops the slot (a database with a slot cannot be dropped).
    pub fn finish(self) {
        self.db
            .query_rows(&format!("SELECT pg_drop_replication_slot('{}')", self.slot))
            .expect("drop slot");
    }

    /// Rows of a query on the source, as text.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.db.query_rows(sql).expect("query source")
    }
}

/// Turns decoded messages into sink changes for a plain PostgreSQL target whose tables have the
/// source's names.
#[derive(Default)]
pub struct Mapper {
    shards: HashMap<u32, Shard>,
    /// Overrides `key_unique` per table name (default: unique unless REPLICA IDENTITY FULL).
    pub unique: HashMap<String, bool>,
}

impl Mapper {
    /// The changes of `txns`, in order.
    pub fn changes(&mut self, txns: &[Txn]) -> Vec<Change> {
        let mut out = Vec::new();
        for t in txns {
            for m in &t.messages {
                if let Some(c) = self.change(m) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// One batch holding all of `txns`.
    pub fn batch(&mut self, txns: &[Txn]) -> NodeBatch {
        let lsn = txns.last().map_or(Lsn::INVALID, |t| t.commit_lsn);
        NodeBatch::complete(self.changes(txns), lsn)
    }

    /// The shard of a relation seen before.
    pub fn shard(&self, relation_id: u32) -> Shard {
        self.shards[&relation_id].clone()
    }

    /// The shard of the table named `name`.
    pub fn shard_named(&self, name: &str) -> Shard {
        self.shards
            .values()
            .find(|s| s.table().name() == format!("public.{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no relation {name} seen"))
    }

    fn change(&mut self, m: &Message) -> Option<Change> {
        Some(match m {
            Message::Relation(r) => {
                let full = r.replica_identity == ReplicaIdentity::Full;
                let unique = self.unique.get(&r.name).copied().unwrap_or(!full);
                let columns = r.columns.iter().map(|c| c.name.clone()).collect();
                let key = (0..r.columns.len())
                    .filter(|&i| r.columns[i].is_key())
                    .collect();
                let table = TargetTable::new(format!("public.{}", r.name), columns, key, unique)
                    .expect("target table");
                let shard = ShardTarget::new(Arc::new(table), "public", &r.name);
                self.shards.insert(r.relation_id, Arc::new(shard));
                return None;
            }
            Message::Insert(i) => Change::Insert {
                shard: self.shard(i.relation_id),
                row: Row::Tuple(i.new.clone()),
            },
            Message::Update(u) => Change::Update {
                shard: self.shard(u.relation_id),
                old_key: u.old.as_ref().map(|o| Row::Tuple(o.tuple().clone())),
                new: Row::Tuple(u.new.clone()),
                moved_from: None,
            },
            Message::Delete(d) => Change::Delete {
                shard: self.shard(d.relation_id),
                key: Row::Tuple(d.old.tuple().clone()),
            },
            Message::Truncate(t) => Change::Truncate {
                shards: t.relation_ids.iter().map(|r| self.shard(*r)).collect(),
                cascade: t.options & Truncate::CASCADE != 0,
                restart_identity: t.options & Truncate::RESTART_IDENTITY != 0,
            },
            _ => return None,
        })
    }
}

/// A connector for a connection string.
pub fn connector(conn_string: &str) -> Arc<dyn Connector> {
    Arc::new(NoTlsConnector::new(conn_string))
}

/// A one-lane writer for `db` under slot `slot`.
pub async fn writer(db: &TestDb, slot: &str) -> NodeWriter {
    NodeWriter::connect(
        connector(&db.conn_string()),
        WriterConfig::new(slot, "target"),
    )
    .await
    .expect("connect writer")
}

/// A target database on the shared server with `ddl` run in it.
pub fn target(prefix: &str, ddl: &str) -> TestDb {
    let db = PgServer::shared()
        .create_database(prefix)
        .expect("create target database");
    db.execute(ddl).expect("target ddl");
    db
}

/// Rows of a query on a database, as text.
pub fn rows(db: &TestDb, sql: &str) -> Vec<Vec<Option<String>>> {
    db.query_rows(sql).expect("query")
}

/// The progress LSN recorded for (slot, node) on a database.
pub fn progress(db: &TestDb, slot: &str, node: &str) -> Option<String> {
    rows(
        db,
        &format!("SELECT lsn::text FROM pgwarp.progress WHERE slot = '{slot}' AND node = '{node}'"),
    )
    .first()
    .and_then(|r| r[0].clone())
}
