//! Type round trips: every built-in type family, plus enums, domains, composites and arrays of
//! them, through each input shape the sink accepts (pgoutput binary, pgoutput text, binary COPY
//! snapshot rows) and each write path (COPY into the shard, staged UPDATE, staged upsert).
//!
//! The target database creates its user types after unrelated ones, so their OIDs differ from
//! the source's (asserted): binary arrays and composites of them only load because the sink
//! rewrites the embedded OIDs. The target's rows are brought back into the source database with
//! text COPY (lossless for every type) and compared column by column with
//! `IS NOT DISTINCT FROM` (as text for json, point and xml, which have no equality operator).

mod sink_support;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt, pin_mut};
use pgwarp_decoder::Lsn;
use pgwarp_sink::{Change, NodeBatch, Row, ShardTarget, TargetTable, split_binary_copy};
use pgwarp_tests::{PgServer, TestDb};
use sink_support::{Mapper, Source, writer};

const TYPES_SOURCE: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ünïcødé');
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE TYPE pair AS (a int, m mood, t text);
";

/// The target creates other types first, so the OIDs of `mood`, `posint` and `pair` differ.
const TYPES_TARGET: &str = "
    CREATE TYPE filler1 AS ENUM ('x');
    CREATE TYPE filler2 AS (x int);
    CREATE DOMAIN filler3 AS text;
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ünïcødé');
    CREATE TYPE filler4 AS ENUM ('y');
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE TYPE pair AS (a int, m mood, t text);
";

/// (column, type, value in row 1, value in row 2); row 3 is all NULL.
const COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("i2", "smallint", "32767", "-32768"),
    ("i4", "int", "-2147483648", "0"),
    (
        "i8",
        "bigint",
        "9223372036854775807",
        "-9223372036854775808",
    ),
    ("n", "numeric(12,4)", "12345678.1234", "-0.0001"),
    ("nu", "numeric", "'NaN'", "'-Infinity'::numeric + 0"),
    (
        "nb",
        "numeric",
        "'123456789012345678901234567890.000000000000000000001'",
        "0",
    ),
    ("f4", "real", "'NaN'", "'-Infinity'"),
    ("f8", "double precision", "'Infinity'", "'-0'::float8"),
    ("f8b", "double precision", "1e-310", "0.1"),
    (
        "t",
        "text",
        "E'multi\\tbyte ✓ 日本語 \\\\ back\\nslash\\r \\\\N end'",
        "''",
    ),
    ("vc", "varchar(20)", "'varchar ü'", "''"),
    ("bp", "char(5)", "'ab'", "'abcde'"),
    ("by", "bytea", "'\\x00ff5c0a0d09'::bytea", "''::bytea"),
    ("b", "bool", "true", "false"),
    (
        "u",
        "uuid",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        "'00000000-0000-0000-0000-000000000000'",
    ),
    ("d", "date", "'infinity'", "'-infinity'"),
    ("d2", "date", "'4713-01-01 BC'", "'5874897-12-31'"),
    ("tm", "time", "'24:00:00'", "'00:00:00.000001'"),
    ("ttz", "timetz", "'12:34:56.789+05:30'", "'00:00:00-15:59'"),
    (
        "ts",
        "timestamp",
        "'-infinity'",
        "'294276-12-31 23:59:59.999999'",
    ),
    (
        "tstz",
        "timestamptz",
        "'infinity'",
        "'2000-01-01 00:00:00+00'",
    ),
    (
        "iv",
        "interval",
        "'1 year 2 mons -3 days 04:05:06.789'",
        "'-178000000 years'",
    ),
    (
        "j",
        "json",
        "'{\"a\": [1, 2.50, \"x\"],  \"b\" : null}'",
        "' [ ] '",
    ),
    (
        "jb",
        "jsonb",
        "'{\"k\": {\"z\": 1, \"a\": [true, null, 1.10]}}'",
        "'null'",
    ),
    ("ip", "inet", "'192.168.1.1/24'", "'::1'"),
    ("cid", "cidr", "'10.0.0.0/8'", "'2001:db8::/32'"),
    (
        "mac",
        "macaddr",
        "'08:00:2b:01:02:03'",
        "'ff:ff:ff:ff:ff:ff'",
    ),
    (
        "mac8",
        "macaddr8",
        "'08:00:2b:01:02:03:04:05'",
        "'00:00:00:00:00:00:00:00'",
    ),
    ("bt", "bit(8)", "B'10101010'", "B'00000000'"),
    ("vb", "varbit", "B'101'", "B''"),
    ("mo", "money", "'1234.56'", "'-92233720368547758.08'"),
    ("ia", "int[]", "'{1,NULL,3}'", "'{}'"),
    (
        "ia2",
        "int[]",
        "'[0:1][2:3]={{1,2},{3,NULL}}'",
        "'{{{1}},{{2}}}'",
    ),
    (
        "ta",
        "text[]",
        "'{\"a b\",\"c\\\"d\",NULL,\"e,f\",\"\"}'",
        "'{}'",
    ),
    ("r4", "int4range", "'[1,10)'", "'empty'"),
    (
        "rts",
        "tstzrange",
        "'[2020-01-01 00:00+00,infinity)'",
        "'(,)'",
    ),
    ("rn", "numrange", "'(,5.5]'", "'[0,0]'"),
    ("mr", "int4multirange", "'{[1,3), [5,7)}'", "'{}'"),
    ("e", "mood", "'ünïcødé'", "'sad'"),
    ("dm", "posint", "42", "1"),
    ("c", "pair", "'(1,happy,\"x,y\")'", "'(,,)'"),
    ("ea", "mood[]", "'{sad,NULL,happy}'", "'{}'"),
    ("ea2", "mood[]", "'{{ok,sad},{happy,ünïcødé}}'", "'{NULL}'"),
    (
        "ca",
        "pair[]",
        "ARRAY['(1,ok,a)'::pair, NULL, '(2,sad,)'::pair]",
        "'{}'",
    ),
    ("da", "posint[]", "ARRAY[1, 2]::posint[]", "'{}'"),
    ("pt", "point", "'(1.5,-2)'", "'(0,0)'"),
    ("lsn", "pg_lsn", "'16/B374D848'", "'0/0'"),
    ("oi", "oid", "4294967295", "0"),
    ("nm", "name", "'a name'", "''"),
    ("ch", "\"char\"", "'c'", "''"),
    ("tsv", "tsvector", "'a fat:1 cat:2B'", "''"),
    ("x", "xml", "'<a b=\"1\">t</a>'", "'text only'"),
    (
        "huge",
        "text",
        "repeat('ü0123456789abcdef', 90000)",
        "repeat(E'\\\\\\t', 700000)",
    ),
    (
        "hugeb",
        "bytea",
        "decode(repeat('00ff10', 400000), 'hex')",
        "'\\x'::bytea",
    ),
];

/// Columns compared as text (no equality operator).
const AS_TEXT: &[&str] = &["j", "pt", "x"];

fn table_ddl(name: &str) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(c, t, _, _)| format!("{c} {t}"))
        .collect();
    format!(
        "CREATE TABLE {name} (id int PRIMARY KEY, {});",
        cols.join(", ")
    )
}

fn ddl(types: &str) -> String {
    format!("{types} {} {}", table_ddl("types"), table_ddl("types2"))
}

fn row_values(row: usize) -> Vec<&'static str> {
    COLUMNS
        .iter()
        .map(|(_, _, a, b)| match row {
            1 => *a,
            2 => *b,
            _ => "NULL",
        })
        .collect()
}

fn column_list() -> String {
    COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
}

/// The workload: ids into `types`, then updates to full values; full rows into `types2`.
fn workload(source: &Source) {
    source.exec("INSERT INTO types (id) VALUES (1), (2), (3)");
    let mut updates = String::new();
    for id in 1..=3 {
        updates.push_str(&format!(
            "UPDATE types SET ({}) = ROW({}) WHERE id = {id};",
            column_list(),
            row_values(id).join(", ")
        ));
    }
    source.exec(&updates);
    let mut inserts = String::new();
    for id in 1..=3 {
        inserts.push_str(&format!(
            "INSERT INTO types2 (id, {}) VALUES ({id}, {});",
            column_list(),
            row_values(id).join(", ")
        ));
    }
    source.exec(&inserts);
}

fn target_db(prefix: &str) -> TestDb {
    let db = PgServer::shared().create_database(prefix).unwrap();
    db.execute(&ddl(TYPES_TARGET)).unwrap();
    db
}

fn type_oids(db: &TestDb) -> Vec<Option<String>> {
    db.query_rows("SELECT 'mood'::regtype::oid, 'posint'::regtype::oid, 'pair'::regtype::oid")
        .unwrap()
        .remove(0)
}

/// Copies `table` of `target` into `back_<table>` of the source with text COPY and compares it
/// with the source's `table`, column by column.
async fn assert_same(source: &TestDb, target: &TestDb, table: &str) {
    assert_ne!(
        type_oids(source),
        type_oids(target),
        "user type oids must differ"
    );
    let back = format!("back_{table}");
    source
        .execute(&format!(
            "DROP TABLE IF EXISTS {back}; CREATE TABLE {back} (LIKE {table})"
        ))
        .unwrap();
    let from = target.connect().await.unwrap();
    let to = source.connect().await.unwrap();
    let out = from
        .copy_out(&format!("COPY {table} TO STDOUT"))
        .await
        .unwrap();
    let sink = to
        .copy_in::<_, Bytes>(&format!("COPY {back} FROM STDIN"))
        .await
        .unwrap();
    pin_mut!(out);
    pin_mut!(sink);
    while let Some(chunk) = out.next().await {
        sink.send(chunk.unwrap()).await.unwrap();
    }
    sink.as_mut().finish().await.unwrap();
    let checks: Vec<String> = std::iter::once("id")
        .chain(COLUMNS.iter().map(|c| c.0))
        .map(|c| {
            let (l, r) = if AS_TEXT.contains(&c) {
                (format!("s.{c}::text"), format!("b.{c}::text"))
            } else {
                (format!("s.{c}"), format!("b.{c}"))
            };
            format!("CASE WHEN {l} IS NOT DISTINCT FROM {r} THEN NULL ELSE '{c}' END")
        })
        .collect();
    let diffs = source
        .query_rows(&format!(
            "SELECT coalesce(s.id, b.id), array_remove(ARRAY[{}], NULL)::text \
             FROM {table} s FULL JOIN {back} b ON s.id = b.id ORDER BY 1",
            checks.join(", ")
        ))
        .unwrap();
    let want: Vec<Vec<Option<String>>> = (1..=3)
        .map(|i| vec![Some(i.to_string()), Some("{}".into())])
        .collect();
    assert_eq!(diffs, want, "columns that differ per row of {table}");
}

async fn pgoutput_round_trip(binary: bool) {
    let source = Source::new("sink_types_src", &ddl(TYPES_SOURCE), binary);
    workload(&source);
    let target = target_db("sink_types_dst");
    let txns = source.changes().await;
    assert_eq!(txns.len(), 3);
    let mut mapper = Mapper::default();
    let mut w = writer(&target, &source.slot).await;
    // Three batches: inserts of ids (COPY), updates to every value (staged UPDATE), inserts of
    // full rows (COPY).
    for t in &txns {
        let report = w
            .apply(&NodeBatch::complete(
                mapper.changes(std::slice::from_ref(t)),
                t.commit_lsn,
            ))
            .await
            .unwrap();
        assert!(!report.skipped);
    }
    assert_same(&source.db, &target, "types").await;
    assert_same(&source.db, &target, "types2").await;
    source.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_pgoutput_round_trips_every_type_family() {
    pgoutput_round_trip(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_pgoutput_round_trips_every_type_family() {
    pgoutput_round_trip(false).await;
}

/// Snapshot rows (`COPY ... TO STDOUT (FORMAT binary)`) passed through as they are: a fresh
/// chunk in bulk by direct COPY (split only to rewrite OIDs), a resumed (idempotent) one as
/// single rows by staged upsert, applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_snapshot_round_trips_every_type_family() {
    let source = Source::new("sink_types_snap", &ddl(TYPES_SOURCE), true);
    workload(&source);
    let target = target_db("sink_types_snap_dst");
    let client = source.db.connect().await.unwrap();
    let columns: Vec<String> = std::iter::once("id".to_string())
        .chain(COLUMNS.iter().map(|c| c.0.to_string()))
        .collect();
    let mut w = writer(&target, &source.slot).await;
    for (table, idempotent) in [("types2", false), ("types", true)] {
        let stream = client
            .copy_out(&format!(
                "COPY (SELECT id, {} FROM {table} ORDER BY id) TO STDOUT (FORMAT binary)",
                column_list()
            ))
            .await
            .unwrap();
        pin_mut!(stream);
        let mut data = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk.unwrap());
        }
        let tuples = split_binary_copy(&data.freeze()).unwrap();
        assert_eq!(tuples.len(), 3);
        let t =
            TargetTable::new(format!("public.{table}"), columns.clone(), vec![0], true).unwrap();
        let shard = Arc::new(ShardTarget::new(Arc::new(t), "public", table));
        if idempotent {
            // A resumed chunk: single rows, upserted through the staging table, twice.
            let changes: Vec<Change> = tuples
                .into_iter()
                .map(|t| Change::Insert {
                    shard: shard.clone(),
                    row: Row::Copy(t),
                })
                .collect();
            for _ in 0..2 {
                let r = w
                    .apply(&NodeBatch::snapshot_chunk(changes.clone()))
                    .await
                    .unwrap();
                assert_eq!(r.counts.inserted, 3);
            }
        } else {
            // A fresh chunk: the tuples in bulk, as the snapshot reader cut them.
            let mut data = BytesMut::new();
            for t in &tuples {
                data.extend_from_slice(t.as_bytes());
            }
            let bulk = Change::InsertRows {
                shard: shard.clone(),
                data: data.freeze(),
                rows: tuples.len() as u64,
            };
            let r = w
                .apply(&NodeBatch::complete(vec![bulk], Lsn(1)))
                .await
                .unwrap();
            assert_eq!(r.counts.inserted, 3);
        }
        assert_same(&source.db, &target, table).await;
    }
    source.finish();
}

/// Forwards connections on a local port to `port`, recording what clients send.
async fn recording_proxy(port: u16) -> (u16, Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (local, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What goes over the wire: the enum array's element OID and the composite's field OID are the
/// target's, not the source's (PostgreSQL 14+ would accept either, older servers only the
/// target's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_values_carry_the_target_node_oids() {
    let ddl = "CREATE TABLE t (id int PRIMARY KEY, ea mood[], c pair)";
    let source = Source::new("sink_oids_src", &format!("{TYPES_SOURCE} {ddl}"), true);
    let target = PgServer::shared().create_database("sink_oids_dst").unwrap();
    target.execute(&format!("{TYPES_TARGET} {ddl}")).unwrap();
    source.exec("INSERT INTO t VALUES (1, '{happy,sad}', '(7,ok,z)')");
    let oid = |db: &TestDb, t: &str| -> u32 {
        db.query_scalar::<u32>(&format!("SELECT '{t}'::regtype::oid"))
            .unwrap()
    };
    let (src_mood, dst_mood) = (oid(&source.db, "mood"), oid(&target, "mood"));
    assert_ne!(src_mood, dst_mood);
    let (port, seen) = recording_proxy(target.port()).await;
    let conn = format!(
        "host=127.0.0.1 port={port} user=postgres dbname={}",
        target.name()
    );
    let mut w = pgwarp_sink::NodeWriter::connect(
        sink_support::connector(&conn),
        pgwarp_sink::WriterConfig::new(&source.slot, "target"),
    )
    .await
    .unwrap();
    let txns = source.changes().await;
    let mut mapper = Mapper::default();
    w.apply(&mapper.batch(&txns)).await.unwrap();
    let sent = seen.lock().unwrap().clone();
    // array header: ndim 1, flags 0, element type
    let array = |oid: u32| [&[0, 0, 0, 1, 0, 0, 0, 0][..], &oid.to_be_bytes()].concat();
    // record field 2: type oid, length 2, "ok"
    let field = |oid: u32| [&oid.to_be_bytes()[..], &[0, 0, 0, 2], b"ok"].concat();
    assert!(
        contains(&sent, &array(dst_mood)),
        "target enum oid not sent"
    );
    assert!(!contains(&sent, &array(src_mood)), "source enum oid sent");
    assert!(
        contains(&sent, &field(dst_mood)),
        "target field oid not sent"
    );
    assert!(!contains(&sent, &field(src_mood)), "source field oid sent");
    let got = target
        .query_rows("SELECT ea::text, c::text FROM t")
        .unwrap();
    assert_eq!(
        got,
        vec![vec![Some("{happy,sad}".into()), Some("(7,ok,z)".into())]]
    );
    source.finish();
}
