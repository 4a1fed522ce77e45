//! Golden tests of `pgwarp-decoder` against a real PostgreSQL 15.
//!
//! Each test makes changes on a throwaway database, reads the raw pgoutput bytes back with
//! `pg_logical_slot_peek_binary_changes` (one row per message, no XLogData framing), decodes them
//! with one `Decoder` per stream, and asserts every field against what the server says: relation
//! and type OIDs from the catalogs, xids from `txid_current()`, LSNs from the `lsn` column,
//! `pg_logical_emit_message` and `pg_current_wal_lsn()`, and exact column values in text and
//! binary mode. Every frame must also re-encode to the exact bytes the server sent.
//!
//! `PGWARP_WRITE_TESTDATA=1` makes `capture_of_a_mixed_binary_stream` rewrite
//! `decoder/testdata/pg15_v2_binary_mixed.bin`.

use bytes::{Bytes, BytesMut};
use pgwarp_decoder::capture::{write_header, write_record};
use pgwarp_decoder::*;
use pgwarp_tests::{PgServer, TestDb, unique_name};
use tokio_postgres::Client;

/// A database with a publication `pub` for all tables and a pgoutput slot.
///
/// Test tables are created `WITH (autovacuum_enabled = false)`: an auto-analyze between two
/// transactions invalidates the relation cache, and pgoutput then sends Relation (and Type)
/// messages again, which would make the expected message sequences timing-dependent.
struct Fixture {
    db: TestDb,
    client: Client,
    slot: String,
    prepared: std::sync::Mutex<Vec<String>>,
}

impl Fixture {
    async fn new(prefix: &str, schema: &str, two_phase: bool) -> Fixture {
        let db = PgServer::shared().create_database(prefix).unwrap();
        let client = db.connect().await.unwrap();
        client.batch_execute(schema).await.unwrap();
        client
            .batch_execute("CREATE PUBLICATION pub FOR ALL TABLES")
            .await
            .unwrap();
        // Peek reads only flushed WAL: commit synchronously so every change is visible at once.
        client
            .batch_execute("SET synchronous_commit = on; SET TimeZone = 'UTC'")
            .await
            .unwrap();
        let slot = unique_name(prefix);
        client
            .query(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, $2)",
                &[&slot, &two_phase],
            )
            .await
            .unwrap();
        Fixture {
            db,
            client,
            slot,
            prepared: Default::default(),
        }
    }

    async fn exec(&self, sql: &str) {
        self.client.batch_execute(sql).await.unwrap();
    }

    /// Runs `sql` in a transaction and returns its xid.
    async fn xact(&self, sql: &str) -> u32 {
        let xid = self.open_xact(sql).await;
        self.exec("COMMIT").await;
        xid
    }

    /// Starts a transaction running `sql` and returns its xid; the caller ends it.
    async fn open_xact(&self, sql: &str) -> u32 {
        self.exec(&format!("BEGIN; {sql}")).await;
        let xid: i64 = self
            .client
            .query_one("SELECT txid_current()", &[])
            .await
            .unwrap()
            .get(0);
        u32::try_from(xid).unwrap()
    }

    async fn scalar_u32(&self, sql: &str) -> u32 {
        self.client.query_one(sql, &[]).await.unwrap().get(0)
    }

    async fn lsn(&self, sql: &str) -> Lsn {
        let text: String = self.client.query_one(sql, &[]).await.unwrap().get(0);
        text.parse().unwrap()
    }

    /// The raw rows of `pg_logical_slot_peek_binary_changes` with `options`.
    async fn peek_raw(&self, options: &str) -> Vec<(Lsn, Bytes)> {
        let sql = format!(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, \
             'publication_names', 'pub', 'messages', 'true', {options})"
        );
        self.client
            .query(&sql, &[&self.slot])
            .await
            .unwrap()
            .iter()
            .map(|row| {
                let lsn: String = row.get(0);
                let data: Vec<u8> = row.get(1);
                (lsn.parse().unwrap(), Bytes::from(data))
            })
            .collect()
    }

    /// Peeks and decodes every message with one decoder and checks each re-encodes exactly.
    ///
    /// Returns the messages without Relation and Type messages identical to one already
    /// returned: pgoutput sends them again after any invalidation of its relation cache, and some
    /// invalidations (a cache reset under load, the relfilenode swap of a TRUNCATE) are not
    /// something these tests control. A first Relation, or one whose content changed (another
    /// xid inside a stream, a new column), is always kept.
    async fn peek(&self, version: ProtocolVersion, options: &str) -> Vec<(Lsn, Message)> {
        let mut decoder = Decoder::new(version);
        let options = format!("'proto_version', '{}', {options}", version.as_u32());
        let mut schema_seen: Vec<Message> = Vec::new();
        self.peek_raw(&options)
            .await
            .into_iter()
            .filter_map(|(lsn, frame)| {
                let message = decoder.decode_at(&frame, lsn).unwrap();
                assert_eq!(message.to_bytes().unwrap(), frame, "re-encoding {lsn}");
                if matches!(message, Message::Relation(_) | Message::Type(_)) {
                    if schema_seen.contains(&message) {
                        return None;
                    }
                    schema_seen.push(message.clone());
                }
                Some((lsn, message))
            })
            .collect()
    }

    /// Prepares the open transaction as `gid`. A prepared transaction left behind by a failing
    /// test would block every later slot creation on the server, so `Drop` rolls it back.
    async fn prepare(&self, gid: &str) {
        self.prepared.lock().unwrap().push(gid.to_owned());
        self.exec(&format!("PREPARE TRANSACTION '{gid}'")).await;
    }

    async fn finish(self) {
        self.client
            .query("SELECT pg_drop_replication_slot($1)", &[&self.slot])
            .await
            .unwrap();
    }
}

impl Drop for Fixture {
    /// Best-effort cleanup, also after a failure: pending prepared transactions first (they
    /// block slot creation in other tests), then the slot (it blocks dropping the database).
    fn drop(&mut self) {
        let gids = std::mem::take(&mut *self.prepared.lock().unwrap_or_else(|e| e.into_inner()));
        for gid in gids {
            let pending = self.db.query_rows(&format!(
                "SELECT 1 FROM pg_prepared_xacts WHERE gid = '{gid}'"
            ));
            if pending.is_ok_and(|rows| !rows.is_empty()) {
                let _ = self.db.execute(&format!("ROLLBACK PREPARED '{gid}'"));
            }
        }
        let _ = self.db.execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{}'",
            self.slot
        ));
    }
}

/// The message tags, e.g. `"B R I C"`, with runs of more than 3 equal tags as `I*400`.
fn tags(messages: &[(Lsn, Message)]) -> String {
    let mut out: Vec<(char, usize)> = Vec::new();
    for (_, m) in messages {
        let t = m.tag() as char;
        match out.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => out.push((t, 1)),
        }
    }
    out.iter()
        .map(|&(t, n)| match n {
            1 => t.to_string(),
            2 | 3 => vec![t.to_string(); n].join(" "),
            _ => format!("{t}*{n}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn column(name: &str, flags: u8, type_id: Oid) -> RelationColumn {
    RelationColumn {
        flags,
        name: name.into(),
        type_id,
        type_modifier: -1,
    }
}

fn text(s: &str) -> ColumnValue {
    ColumnValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn binary(b: &[u8]) -> ColumnValue {
    ColumnValue::Binary(Bytes::copy_from_slice(b))
}

/// Checks the LSN facts of a non-streamed transaction `[begin .. commit]` and returns
/// (begin, commit).
fn check_transaction(messages: &[(Lsn, Message)], xid: u32) -> (Begin, Commit) {
    let (Some((begin_lsn, Message::Begin(begin))), Some((commit_row, Message::Commit(commit)))) =
        (messages.first(), messages.last())
    else {
        panic!("not a transaction: {}", tags(messages))
    };
    assert_eq!(begin.xid, xid);
    assert_eq!(begin.final_lsn, commit.commit_lsn);
    assert_eq!(begin.commit_time, commit.commit_time);
    assert!(commit.commit_lsn < commit.end_lsn);
    assert_eq!(*commit_row, commit.end_lsn);
    assert_eq!(commit.flags, 0);
    let rows: Vec<Lsn> = messages.iter().map(|(l, _)| *l).collect();
    assert!(rows.is_sorted(), "row LSNs go forward");
    assert!(*begin_lsn <= commit.commit_lsn);
    (begin.clone(), commit.clone())
}

const ITEMS_SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE items (id int8 PRIMARY KEY, name text, qty int4, m mood, at timestamptz,
                        flag bool, raw bytea, note text, big text)
        WITH (autovacuum_enabled = false);
    ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;";

#[tokio::test]
async fn v1_changes_in_text_and_binary_mode() {
    let f = Fixture::new("golden_v1", ITEMS_SCHEMA, false).await;
    let items = f.scalar_u32("SELECT 'items'::regclass::oid").await;
    let mood = f.scalar_u32("SELECT 'mood'::regtype::oid").await;
    let big = "x".repeat(5000);
    let xid1 = f
        .xact(&format!(
            "INSERT INTO items VALUES (1, 'héllo', 42, 'happy', '2000-01-02 00:00:00+00', true, \
             '\\x00ff', NULL, '{big}')"
        ))
        .await;
    let xid2 = f
        .xact(
            "UPDATE items SET qty = 43 WHERE id = 1;
             UPDATE items SET id = 2 WHERE id = 1;
             DELETE FROM items WHERE id = 2;",
        )
        .await;
    let wal_now = f.lsn("SELECT pg_current_wal_lsn()::text").await;

    let expected_relation = Relation {
        xid: None,
        relation_id: items,
        namespace: "public".into(),
        name: "items".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("id", 1, 20),
            column("name", 0, 25),
            column("qty", 0, 23),
            column("m", 0, mood),
            column("at", 0, 1184),
            column("flag", 0, 16),
            column("raw", 0, 17),
            column("note", 0, 25),
            column("big", 0, 25),
        ],
    };
    let day_micros = 86_400_000_000i64.to_be_bytes();
    for binary_mode in [false, true] {
        let options = format!("'binary', '{binary_mode}'");
        let messages = f.peek(ProtocolVersion::V1, &options).await;
        assert_eq!(tags(&messages), "B Y R I C B U U D C");
        let (b1, c1) = check_transaction(&messages[..5], xid1);
        let (b2, c2) = check_transaction(&messages[5..], xid2);
        assert!(c1.end_lsn <= b2.final_lsn && c2.end_lsn <= wal_now);
        assert!(b1.commit_time <= b2.commit_time);

        assert_eq!(
            messages[1].1,
            Message::Type(Type {
                xid: None,
                type_id: mood,
                namespace: "public".into(),
                name: "mood".into(),
            })
        );
        assert_eq!(messages[2].1, Message::Relation(expected_relation.clone()));

        let Message::Insert(insert) = &messages[3].1 else {
            panic!("expected insert")
        };
        assert_eq!(insert.relation_id, items);
        let row: Vec<ColumnValue> = if binary_mode {
            vec![
                binary(&1i64.to_be_bytes()),
                binary("héllo".as_bytes()),
                binary(&42i32.to_be_bytes()),
                binary(b"happy"),
                binary(&day_micros),
                binary(&[1]),
                binary(&[0x00, 0xff]),
                ColumnValue::Null,
                binary(big.as_bytes()),
            ]
        } else {
            vec![
                text("1"),
                text("héllo"),
                text("42"),
                text("happy"),
                text("2000-01-02 00:00:00+00"),
                text("t"),
                text("\\x00ff"),
                ColumnValue::Null,
                text(&big),
            ]
        };
        assert_eq!(insert.new.to_values(), row);

        // qty changed, the TOASTed `big` did not: it is not sent.
        let Message::Update(u1) = &messages[6].1 else {
            panic!("expected update")
        };
        let mut new = row.clone();
        new[2] = if binary_mode {
            binary(&43i32.to_be_bytes())
        } else {
            text("43")
        };
        new[8] = ColumnValue::UnchangedToast;
        assert_eq!((u1.relation_id, &u1.old), (items, &None));
        assert_eq!(u1.new.to_values(), new);
        assert!(u1.new.get(8).unwrap().is_unchanged_toast());

        // The key changed: the old key comes first, other old columns NULL.
        let Message::Update(u2) = &messages[7].1 else {
            panic!("expected update")
        };
        let id = |n: i64| {
            if binary_mode {
                binary(&n.to_be_bytes())
            } else {
                text(&n.to_string())
            }
        };
        let key_of = |n: i64| {
            let mut key = vec![ColumnValue::Null; 9];
            key[0] = id(n);
            key
        };
        let Some(OldTuple::Key(old)) = &u2.old else {
            panic!("expected an old key")
        };
        assert_eq!(old.to_values(), key_of(1));
        new[0] = id(2);
        assert_eq!(u2.new.to_values(), new);

        let Message::Delete(d) = &messages[8].1 else {
            panic!("expected delete")
        };
        assert_eq!(d.relation_id, items);
        assert_eq!(
            d.old,
            OldTuple::Key(
                TupleData::from_values(key_of(2).iter().map(ColumnValue::as_ref)).unwrap()
            )
        );
    }
    f.finish().await;
}

#[tokio::test]
async fn replica_identity_full_index_and_nothing() {
    let f = Fixture::new(
        "golden_ident",
        "CREATE TABLE full_t (id int, v text) WITH (autovacuum_enabled = false);
         ALTER TABLE full_t REPLICA IDENTITY FULL;
         CREATE TABLE idx_t (a int NOT NULL, b int NOT NULL, c text)
             WITH (autovacuum_enabled = false);
         CREATE UNIQUE INDEX idx_t_ab ON idx_t (a, b);
         ALTER TABLE idx_t REPLICA IDENTITY USING INDEX idx_t_ab;
         CREATE TABLE nothing_t (id int) WITH (autovacuum_enabled = false);
         ALTER TABLE nothing_t REPLICA IDENTITY NOTHING;",
        false,
    )
    .await;
    let full_t = f.scalar_u32("SELECT 'full_t'::regclass::oid").await;
    let idx_t = f.scalar_u32("SELECT 'idx_t'::regclass::oid").await;
    let nothing_t = f.scalar_u32("SELECT 'nothing_t'::regclass::oid").await;
    let xid = f
        .xact(
            "INSERT INTO full_t VALUES (1, 'a');
             UPDATE full_t SET v = 'b';
             DELETE FROM full_t;
             INSERT INTO idx_t VALUES (1, 2, 'c');
             UPDATE idx_t SET c = 'd';
             UPDATE idx_t SET a = 5;
             DELETE FROM idx_t;
             INSERT INTO nothing_t VALUES (7);",
        )
        .await;
    let messages = f.peek(ProtocolVersion::V1, "'binary', 'false'").await;
    assert_eq!(tags(&messages), "B R I U D R I U U D R I C");
    check_transaction(&messages, xid);
    let m = |i: usize| &messages[i].1;
    let tuple = |values: &[Option<&str>]| {
        TupleData::from_values(values.iter().map(|v| match v {
            Some(s) => ColumnRef::Text(s.as_bytes()),
            None => ColumnRef::Null,
        }))
        .unwrap()
    };

    // FULL: every column is part of the identity, old rows are sent whole ('O').
    assert_eq!(
        *m(1),
        Message::Relation(Relation {
            xid: None,
            relation_id: full_t,
            namespace: "public".into(),
            name: "full_t".into(),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![column("id", 1, 23), column("v", 1, 25)],
        })
    );
    assert_eq!(
        *m(3),
        Message::Update(Update {
            xid: None,
            relation_id: full_t,
            old: Some(OldTuple::Full(tuple(&[Some("1"), Some("a")]))),
            new: tuple(&[Some("1"), Some("b")]),
        })
    );
    assert_eq!(
        *m(4),
        Message::Delete(Delete {
            xid: None,
            relation_id: full_t,
            old: OldTuple::Full(tuple(&[Some("1"), Some("b")])),
        })
    );

    // USING INDEX: the index columns are the key; no old tuple unless the key changes.
    let Message::Relation(rel) = m(5) else {
        panic!("expected relation")
    };
    assert_eq!(
        (rel.relation_id, rel.replica_identity),
        (idx_t, ReplicaIdentity::Index)
    );
    assert_eq!(
        rel.columns,
        [column("a", 1, 23), column("b", 1, 23), column("c", 0, 25)]
    );
    let Message::Update(same_key) = m(7) else {
        panic!("expected update")
    };
    assert_eq!(same_key.old, None);
    assert_eq!(same_key.new, tuple(&[Some("1"), Some("2"), Some("d")]));
    assert_eq!(
        *m(8),
        Message::Update(Update {
            xid: None,
            relation_id: idx_t,
            old: Some(OldTuple::Key(tuple(&[Some("1"), Some("2"), None]))),
            new: tuple(&[Some("5"), Some("2"), Some("d")]),
        })
    );
    assert_eq!(
        *m(9),
        Message::Delete(Delete {
            xid: None,
            relation_id: idx_t,
            old: OldTuple::Key(tuple(&[Some("5"), Some("2"), None])),
        })
    );

    let Message::Relation(rel) = m(10) else {
        panic!("expected relation")
    };
    assert_eq!(
        (rel.relation_id, rel.replica_identity),
        (nothing_t, ReplicaIdentity::Nothing)
    );
    assert_eq!(rel.columns, [column("id", 0, 23)]);
    f.finish().await;
}

#[tokio::test]
async fn truncate_options_logical_messages_and_origin() {
    let f = Fixture::new(
        "golden_misc",
        "CREATE TABLE parent (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
         CREATE TABLE child (id int REFERENCES parent) WITH (autovacuum_enabled = false);
         CREATE TABLE seq_t (id int GENERATED ALWAYS AS IDENTITY, v int)
             WITH (autovacuum_enabled = false);",
        false,
    )
    .await;
    let parent = f.scalar_u32("SELECT 'parent'::regclass::oid").await;
    let child = f.scalar_u32("SELECT 'child'::regclass::oid").await;
    let seq_t = f.scalar_u32("SELECT 'seq_t'::regclass::oid").await;
    let origin = unique_name("pgwarp_origin");

    let x1 = f.xact("TRUNCATE parent RESTART IDENTITY CASCADE").await;
    let x2 = f.xact("TRUNCATE seq_t RESTART IDENTITY").await;
    let x3 = f.xact("TRUNCATE seq_t").await;
    let x4 = f.xact("TRUNCATE parent CASCADE").await;
    let x5 = f.open_xact("INSERT INTO seq_t (v) VALUES (1)").await;
    let tx_message = f
        .lsn("SELECT pg_logical_emit_message(true, 'pgwarp', 'tx-content')::text")
        .await;
    f.exec("COMMIT").await;
    let plain_message = f
        .lsn("SELECT pg_logical_emit_message(false, 'pgwarp', '\\x00ff'::bytea)::text")
        .await;
    f.exec(&format!(
        "SELECT pg_replication_origin_create('{origin}');
         SELECT pg_replication_origin_session_setup('{origin}');"
    ))
    .await;
    let x6 = f
        .xact(
            "SELECT pg_replication_origin_xact_setup('0/ABCDEF', now());
             INSERT INTO seq_t (v) VALUES (2);",
        )
        .await;
    f.exec(&format!(
        "SELECT pg_replication_origin_session_reset();
         SELECT pg_replication_origin_drop('{origin}');"
    ))
    .await;

    let messages = f.peek(ProtocolVersion::V1, "'binary', 'false'").await;
    assert_eq!(
        tags(&messages),
        "B R R T C B R T C B T C B T C B I M C M B O I C"
    );
    let truncate = |i: usize| {
        let Message::Truncate(t) = &messages[i].1 else {
            panic!("expected truncate at {i}: {}", tags(&messages))
        };
        let mut ids = t.relation_ids.clone();
        ids.sort_unstable();
        (t.options, t.cascade(), t.restart_identity(), ids)
    };
    let mut both = vec![parent, child];
    both.sort_unstable();
    check_transaction(&messages[0..5], x1);
    assert_eq!(truncate(3), (3, true, true, both.clone()));
    check_transaction(&messages[5..9], x2);
    assert_eq!(truncate(7), (2, false, true, vec![seq_t]));
    check_transaction(&messages[9..12], x3);
    assert_eq!(truncate(10), (0, false, false, vec![seq_t]));
    check_transaction(&messages[12..15], x4);
    assert_eq!(truncate(13), (1, true, false, both));

    check_transaction(&messages[15..19], x5);
    assert_eq!(messages[17].0, tx_message);
    assert_eq!(
        messages[17].1,
        Message::Logical(LogicalMessage {
            xid: None,
            flags: 1,
            lsn: tx_message,
            prefix: "pgwarp".into(),
            content: Bytes::from_static(b"tx-content"),
        })
    );
    assert_eq!(messages[19].0, plain_message);
    let Message::Logical(plain) = &messages[19].1 else {
        panic!("expected message")
    };
    assert!(!plain.transactional());
    assert_eq!(
        (plain.lsn, plain.content.as_ref()),
        (plain_message, &[0x00, 0xff][..])
    );

    check_transaction(&messages[20..], x6);
    assert_eq!(
        messages[21].1,
        Message::Origin(Origin {
            commit_lsn: "0/ABCDEF".parse().unwrap(),
            name: origin,
        })
    );
    f.finish().await;
}

const STREAM_SCHEMA: &str = "
    CREATE TABLE items (id int8 PRIMARY KEY, pad text) WITH (autovacuum_enabled = false);
    CREATE TABLE other (id int8 PRIMARY KEY) WITH (autovacuum_enabled = false);";

/// Rows large enough that 400 of them exceed `logical_decoding_work_mem = 64kB`.
fn big_insert(from: u32, to: u32) -> String {
    format!("INSERT INTO items SELECT g, repeat('p', 200) FROM generate_series({from}, {to}) g;")
}

/// Splits at Stream Stop messages; checks each segment is Stream Start .. Stream Stop, and that
/// only the first is marked first when `first`.
fn segments(messages: &[(Lsn, Message)], xid: u32, first: bool) -> Vec<&[(Lsn, Message)]> {
    let mut out = Vec::new();
    let mut rest = messages;
    while let Some(stop) = rest.iter().position(|(_, m)| *m == Message::StreamStop) {
        let (segment, tail) = rest.split_at(stop + 1);
        let Message::StreamStart(start) = &segment[0].1 else {
            panic!(
                "segment does not begin with Stream Start: {}",
                tags(segment)
            )
        };
        assert_eq!(start.xid, xid);
        assert_eq!(start.first_segment, first && out.is_empty());
        out.push(segment);
        rest = tail;
    }
    assert!(rest.is_empty(), "left over: {}", tags(rest));
    out
}

fn inserted_ids(messages: &[(Lsn, Message)], xid: Option<u32>) -> Vec<i64> {
    messages
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Insert(i) => {
                assert_eq!(i.xid, xid);
                let ColumnRef::Text(id) = i.new.get(0)? else {
                    panic!("expected a text id")
                };
                std::str::from_utf8(id).ok()?.parse().ok()
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn v2_streamed_transactions() {
    let f = Fixture::new("golden_stream", STREAM_SCHEMA, false).await;
    let small = f.xact("INSERT INTO items VALUES (0, 'small')").await;
    let committed = f
        .xact(&format!(
            "{} SAVEPOINT s; INSERT INTO other VALUES (1); {} ROLLBACK TO s;
             INSERT INTO other VALUES (99);
             SELECT pg_logical_emit_message(true, 'pgwarp', 'in stream');
             TRUNCATE other;",
            big_insert(1, 400),
            big_insert(1001, 1400)
        ))
        .await;
    // A large transaction still in progress on another connection; a commit here flushes its
    // WAL so that peek (which reads flushed WAL only) sees it.
    let writer = f.db.connect().await.unwrap();
    writer
        .batch_execute(&format!("BEGIN; {}", big_insert(2001, 2400)))
        .await
        .unwrap();
    let running: i64 = writer
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    let running = u32::try_from(running).unwrap();
    let flush = f.xact("INSERT INTO other VALUES (1000)").await;
    let wal_now = f.lsn("SELECT pg_current_wal_lsn()::text").await;

    f.exec("SET logical_decoding_work_mem = '64kB'").await;
    let messages = f.peek(ProtocolVersion::V2, "'streaming', 'on'").await;

    // The small transaction is not streamed: no xids in its changes.
    assert_eq!(tags(&messages[..4]), "B R I C");
    check_transaction(&messages[..4], small);
    assert_eq!(inserted_ids(&messages[..4], None), [0]);

    // The committed one: its first 400 rows streamed in segments before the commit.
    let rest = &messages[4..];
    let abort_at = rest
        .iter()
        .position(|(_, m)| matches!(m, Message::StreamAbort(_)))
        .unwrap();
    let early = segments(&rest[..abort_at], committed, true);
    assert!(early.len() >= 2, "{}", tags(&rest[..abort_at]));
    assert!(
        matches!(&early[0][1].1, Message::Relation(r) if r.xid == Some(committed) && r.name == "items")
    );
    let ids: Vec<i64> = early
        .iter()
        .flat_map(|s| inserted_ids(s, Some(committed)))
        .collect();
    assert_eq!(ids, (1..=400).collect::<Vec<_>>());

    // ROLLBACK TO s aborts the subtransaction that inserted 1001..1400.
    let Message::StreamAbort(sub_abort) = &rest[abort_at].1 else {
        unreachable!()
    };
    assert_eq!(sub_abort.xid, committed);
    assert!(sub_abort.subxid > committed);
    assert_eq!(sub_abort.parallel, None);

    let commit_at = rest
        .iter()
        .position(|(_, m)| matches!(m, Message::StreamCommit(_)))
        .unwrap();
    let last = segments(&rest[abort_at + 1..commit_at], committed, false);
    assert_eq!(last.len(), 1);
    assert_eq!(tags(last[0]), "S R I M T E");
    // Changes made after ROLLBACK TO s belong to the savepoint's new subtransaction.
    let Message::Insert(insert) = &last[0][2].1 else {
        unreachable!()
    };
    let subxid = insert.xid.unwrap();
    assert!(subxid > sub_abort.subxid);
    assert_eq!(insert.new.to_values(), [text("99")]);
    let Message::Logical(lm) = &last[0][3].1 else {
        unreachable!()
    };
    assert_eq!(
        (lm.xid, lm.flags, lm.prefix.as_str()),
        (Some(committed), 1, "pgwarp")
    );
    assert_eq!(lm.lsn, last[0][3].0);
    assert!(
        matches!(&last[0][4].1, Message::Truncate(t) if t.xid == Some(subxid) && t.options == 0)
    );

    let (commit_row, Message::StreamCommit(commit)) = &rest[commit_at] else {
        unreachable!()
    };
    assert_eq!((commit.xid, commit.flags), (committed, 0));
    assert!(commit.commit_lsn < commit.end_lsn);
    assert_eq!(*commit_row, commit.end_lsn);

    // The running one: what exceeded the memory limit is streamed while it is in progress (no
    // Stream Commit or Abort yet), then the flushing transaction commits normally (with the
    // Relation again: a schema sent inside a streamed transaction counts only for that one).
    let (tail, flushing) = rest[commit_at + 1..].split_at(rest.len() - commit_at - 1 - 4);
    assert_eq!(tags(flushing), "B R I C");
    check_transaction(flushing, flush);
    assert!(flushing[3].0 <= wal_now);
    let streamed = segments(tail, running, true);
    assert!(!streamed.is_empty(), "{}", tags(tail));
    let ids: Vec<i64> = streamed
        .iter()
        .flat_map(|s| inserted_ids(s, Some(running)))
        .collect();
    assert!(!ids.is_empty() && ids.len() < 400);
    assert_eq!(ids, (2001..2001 + ids.len() as i64).collect::<Vec<_>>());
    writer.batch_execute("ROLLBACK").await.unwrap();
    f.finish().await;
}

#[tokio::test]
async fn v3_two_phase_commit_rollback_and_stream_prepare() {
    let f = Fixture::new("golden_2pc", STREAM_SCHEMA, true).await;
    let items = f.scalar_u32("SELECT 'items'::regclass::oid").await;
    let (g1, g2, g3) = (unique_name("g1"), unique_name("g2"), unique_name("g3"));
    let x1 = f.open_xact("INSERT INTO items VALUES (1, 'one')").await;
    f.prepare(&g1).await;
    f.exec(&format!("COMMIT PREPARED '{g1}'")).await;
    let x3 = f.open_xact(&big_insert(1001, 1400)).await;
    f.prepare(&g3).await;
    f.exec(&format!("COMMIT PREPARED '{g3}'")).await;
    // g2 stays prepared during the first peek. Decoding a prepared transaction that has since
    // been rolled back stops at its first catalog access (PostgreSQL's concurrent-abort
    // handling), which would make its changes appear or not depending on cache state.
    let x2 = f.open_xact("INSERT INTO items VALUES (2, 'two')").await;
    f.prepare(&g2).await;

    f.exec("SET logical_decoding_work_mem = '64kB'").await;
    let options = "'two_phase', 'on', 'streaming', 'on'";
    let messages = f.peek(ProtocolVersion::V3, options).await;
    let shape = tags(&messages);
    assert!(shape.starts_with("b R I P K S R I*"), "{shape}");
    assert!(shape.ends_with("E p K b I P"), "{shape}");

    let prepared = |begin_at: usize, prepare_at: usize, xid: u32, gid: &str| {
        let Message::BeginPrepare(b) = &messages[begin_at].1 else {
            panic!("expected begin prepare at {begin_at}: {shape}")
        };
        let (prepare_row, Message::Prepare(p)) = &messages[prepare_at] else {
            panic!("expected prepare at {prepare_at}: {shape}")
        };
        assert_eq!((b.xid, b.gid.as_str()), (xid, gid));
        assert_eq!((p.xid, p.gid.as_str(), p.flags), (xid, gid, 0));
        assert_eq!(
            (p.prepare_lsn, p.end_lsn, p.prepare_time),
            (b.prepare_lsn, b.end_lsn, b.prepare_time)
        );
        assert!(p.prepare_lsn < p.end_lsn);
        assert_eq!(*prepare_row, p.end_lsn);
        p.clone()
    };
    let p1 = prepared(0, 3, x1, &g1);
    assert!(
        matches!(&messages[2].1, Message::Insert(i) if i.relation_id == items && i.xid.is_none())
    );
    let (k_row, Message::CommitPrepared(k)) = &messages[4] else {
        unreachable!()
    };
    assert_eq!((k.xid, k.gid.as_str(), k.flags), (x1, g1.as_str(), 0));
    assert!(p1.end_lsn <= k.commit_lsn && k.commit_lsn < k.end_lsn);
    assert_eq!(*k_row, k.end_lsn);

    // The large prepared transaction is streamed, then prepared with Stream Prepare.
    let n = messages.len();
    let streamed = segments(&messages[5..n - 5], x3, true);
    let ids: Vec<i64> = streamed
        .iter()
        .flat_map(|s| inserted_ids(s, Some(x3)))
        .collect();
    assert_eq!(ids, (1001..=1400).collect::<Vec<_>>());
    let (sp_row, Message::StreamPrepare(sp)) = &messages[n - 5] else {
        unreachable!()
    };
    assert_eq!((sp.xid, sp.gid.as_str(), sp.flags), (x3, g3.as_str(), 0));
    assert!(sp.prepare_lsn < sp.end_lsn);
    assert_eq!(*sp_row, sp.end_lsn);
    let Message::CommitPrepared(k3) = &messages[n - 4].1 else {
        unreachable!()
    };
    assert_eq!((k3.xid, k3.gid.as_str()), (x3, g3.as_str()));
    assert!(sp.end_lsn <= k3.commit_lsn);

    let p2 = prepared(n - 3, n - 1, x2, &g2);
    assert!(
        matches!(&messages[n - 2].1, Message::Insert(i) if i.new.get(1) == Some(ColumnRef::Text(b"two")))
    );

    // Roll g2 back (plus a commit to flush the rollback record) and read the rollback.
    f.exec(&format!("ROLLBACK PREPARED '{g2}'")).await;
    f.xact("INSERT INTO other VALUES (1)").await;
    let after = f.peek(ProtocolVersion::V3, options).await;
    let (r_row, Message::RollbackPrepared(r)) = &after[after.len() - 5] else {
        panic!("expected rollback prepared: {}", tags(&after))
    };
    assert_eq!((r.xid, r.gid.as_str(), r.flags), (x2, g2.as_str(), 0));
    assert_eq!(
        (r.prepare_end_lsn, r.prepare_time),
        (p2.end_lsn, p2.prepare_time)
    );
    assert!(r.prepare_time <= r.rollback_time);
    assert!(p2.end_lsn < r.rollback_end_lsn);
    assert_eq!(*r_row, r.rollback_end_lsn);
    assert_eq!(tags(&after[after.len() - 4..]), "B R I C");
    f.finish().await;
}

/// A few hundred messages of every common kind, binary mode, protocol 2 with one streamed
/// transaction; rewritten to `decoder/testdata/` with `PGWARP_WRITE_TESTDATA=1`.
#[tokio::test]
async fn capture_of_a_mixed_binary_stream() {
    let f = Fixture::new(
        "golden_capture",
        &format!(
            "{ITEMS_SCHEMA}
             CREATE TABLE events (id int8 PRIMARY KEY, kind text, payload text, at timestamptz)
                 WITH (autovacuum_enabled = false);
             ALTER TABLE events REPLICA IDENTITY FULL;"
        ),
        false,
    )
    .await;
    f.xact(
        "INSERT INTO items SELECT g, 'item ' || g, g * 10, 'ok', \
         '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', g % 2 = 0, \
         '\\x0102', NULL, CASE WHEN g = 1 THEN repeat('t', 3000) END \
         FROM generate_series(1, 50) g",
    )
    .await;
    f.xact("UPDATE items SET qty = qty + 1 WHERE id <= 10; DELETE FROM items WHERE id > 45;")
        .await;
    f.xact("UPDATE items SET id = id + 1000 WHERE id = 2").await;
    f.xact(
        "INSERT INTO events SELECT g, 'k' || g % 3, repeat('e', 300), \
         '2024-01-01 00:00:00+00' FROM generate_series(1, 250) g;
         SELECT pg_logical_emit_message(true, 'pgwarp', 'batch done');",
    )
    .await;
    f.xact("UPDATE events SET kind = 'changed' WHERE id <= 5; DELETE FROM events WHERE id = 6;")
        .await;
    f.exec("SELECT pg_logical_emit_message(false, 'pgwarp', 'checkpoint')")
        .await;
    f.xact("TRUNCATE events").await;

    f.exec("SET logical_decoding_work_mem = '64kB'").await;
    let options = "'proto_version', '2', 'binary', 'true', 'streaming', 'on'";
    let raw = f.peek_raw(options).await;
    let messages = f
        .peek(ProtocolVersion::V2, "'binary', 'true', 'streaming', 'on'")
        .await;
    assert!(raw.len() >= messages.len());
    assert!(raw.len() > 300, "{}", tags(&messages));
    let shape = tags(&messages);
    assert!(
        shape.starts_with("B Y R I*50 C B U*10 D*5 C B U C S R I*"),
        "{shape}"
    );
    assert!(shape.ends_with("D C M B R T C"), "{shape}");
    assert!(shape.contains(" c "), "one streamed transaction: {shape}");

    if std::env::var_os("PGWARP_WRITE_TESTDATA").is_some() {
        let mut buf = BytesMut::new();
        write_header(&mut buf, ProtocolVersion::V2);
        for (lsn, frame) in &raw {
            write_record(&mut buf, *lsn, frame).unwrap();
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../decoder/testdata/pg15_v2_binary_mixed.bin"
        );
        std::fs::write(path, &buf).unwrap();
        eprintln!("wrote {} messages to {path}", raw.len());
    }
    f.finish().await;
}
