//! Topology loading on a plain PostgreSQL and on a hand-made, Citus-shaped catalog that lives
//! in `public` (not `pg_catalog`) and has no Citus functions at all: what is accepted, what is
//! refused at startup and with which message, and what the change watch notices.
//!
//! What each test proves:
//! * `plain_postgres_target_is_one_node`: no Citus catalog → every table is its own single
//!   shard on the target node; missing tables and views are clear errors; dropping and
//!   recreating a table is noticed by the watch.
//! * `catalog_without_citus_functions_loads`: the catalog is found through the search path;
//!   uneven ranges, PG 16 `partkey` text, domains over domains, arrays and inactive reference
//!   placements are handled; `lock_shard_metadata` is reported missing.
//! * `invalid_tables_are_refused_at_startup`: append tables, unhashable types (json), gaps,
//!   non-deterministic collations, dropped distribution columns, inactive hash placements and
//!   groups without a primary each fail the load with a message naming table and column.
//! * `watch_notices_moves_nodes_and_enum_labels`: a placement move, a node change, a new enum label
//!   and a range change each turn the watch to `Changed`.

use pgwarp::citus::{
    CitusError, HashKernel, TableKind, TargetAddr, Topology, TopologyStatus, TopologyWatch,
};
use pgwarp_tests::{PgServer, TestDb};
use tokio_postgres::Client;

async fn setup(prefix: &str, sql: &str) -> (TestDb, Client, TargetAddr) {
    let db = PgServer::shared().create_database(prefix).unwrap();
    db.execute(sql).unwrap();
    let client = db.connect().await.unwrap();
    let addr = TargetAddr {
        host: "127.0.0.1".into(),
        port: db.port(),
    };
    (db, client, addr)
}

#[tokio::test]
async fn plain_postgres_target_is_one_node() {
    let (db, client, addr) = setup(
        "plain_target",
        "CREATE SCHEMA s; CREATE TABLE s.t (id int); CREATE TABLE \"Mixed Case\" (id int); \
         CREATE VIEW v AS SELECT 1",
    )
    .await;
    let topo = Topology::load(&client, &addr, &["s.t", "\"Mixed Case\""])
        .await
        .unwrap();
    assert!(topo.citus.is_none());
    assert_eq!(topo.nodes.len(), 1);
    assert_eq!(
        topo.nodes[0].to_string(),
        format!("127.0.0.1:{}", db.port())
    );
    for t in &topo.tables {
        assert_eq!(t.kind, TableKind::Plain);
        assert_eq!(t.shards.len(), 1);
        assert_eq!(t.shards[0].placements, [0]);
        assert_eq!(t.route_text(None), Ok(0));
    }
    assert_eq!(topo.tables[0].shards[0].qualified_name, "\"s\".\"t\"");
    assert_eq!(
        topo.tables[1].shards[0].qualified_name,
        "\"public\".\"Mixed Case\""
    );
    assert_eq!(
        topo.table("Mixed Case").map(|t| t.oid),
        Some(topo.tables[1].oid)
    );

    let missing = Topology::load(&client, &addr, &["s.t", "nope"])
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "relation \"nope\" does not exist on the target"
    );
    let view = Topology::load(&client, &addr, &["v"]).await.unwrap_err();
    assert!(matches!(view, CitusError::NotATable { .. }), "{view}");

    let watch = TopologyWatch::new(&topo);
    assert_eq!(
        watch.check(&client).await.unwrap(),
        TopologyStatus::Unchanged
    );
    client
        .batch_execute("DROP TABLE s.t; CREATE TABLE s.t (id int)")
        .await
        .unwrap();
    assert_eq!(watch.check(&client).await.unwrap(), TopologyStatus::Changed);
    let again = watch.reload(&client, &addr).await.unwrap();
    assert_ne!(again.tables[0].oid, topo.tables[0].oid);
}

/// A Citus-shaped catalog in `public`, without any Citus function: nodes 1..3 in groups 1..3
/// (group 3 inactive).
const CATALOG: &str = r#"
CREATE TABLE pg_dist_partition (logicalrelid regclass NOT NULL, partmethod "char" NOT NULL,
    partkey text, colocationid integer NOT NULL DEFAULT 0, repmodel "char" NOT NULL DEFAULT 'c',
    autoconverted boolean DEFAULT false);
CREATE TABLE pg_dist_shard (logicalrelid regclass NOT NULL, shardid bigint NOT NULL,
    shardstorage "char" NOT NULL DEFAULT 't', shardminvalue text, shardmaxvalue text);
CREATE TABLE pg_dist_placement (placementid bigserial, shardid bigint NOT NULL,
    shardstate int NOT NULL DEFAULT 1, shardlength bigint NOT NULL DEFAULT 0, groupid int NOT NULL);
CREATE TYPE noderole AS ENUM ('primary', 'secondary', 'unavailable');
CREATE TABLE pg_dist_node (nodeid int PRIMARY KEY, groupid int NOT NULL, nodename text NOT NULL,
    nodeport int NOT NULL, noderack text NOT NULL DEFAULT 'default', hasmetadata bool DEFAULT false,
    isactive bool NOT NULL DEFAULT true, noderole noderole NOT NULL DEFAULT 'primary',
    nodecluster name NOT NULL DEFAULT 'default');
INSERT INTO pg_dist_node (nodeid, groupid, nodename, nodeport, isactive) VALUES
    (1, 1, '127.0.0.1', 7001, true), (2, 2, '127.0.0.1', 7002, true), (3, 3, '127.0.0.1', 7003, false),
    (4, 1, '127.0.0.1', 7101, true);
UPDATE pg_dist_node SET noderole = 'secondary' WHERE nodeid = 4;

-- Registers a table: partition row, shards with ranges (NULL for 'n'), one placement per shard.
CREATE FUNCTION reg(rel regclass, method "char", key text, ranges int[], groups int[],
                    repmodel "char" DEFAULT 's', colocation int DEFAULT 1) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE i int; base bigint := (SELECT coalesce(max(shardid), 102007) FROM pg_dist_shard);
BEGIN
    INSERT INTO pg_dist_partition VALUES (rel, method, key, colocation, repmodel);
    FOR i IN 1 .. array_length(groups, 1) LOOP
        IF ranges IS NULL THEN
            IF i = 1 THEN INSERT INTO pg_dist_shard VALUES (rel, base + 1, 't', NULL, NULL); END IF;
            INSERT INTO pg_dist_placement (shardid, groupid) VALUES (base + 1, groups[i]);
        ELSE
            INSERT INTO pg_dist_shard VALUES (rel, base + i, 't', ranges[2*i-1]::text, ranges[2*i]::text);
            INSERT INTO pg_dist_placement (shardid, groupid) VALUES (base + i, groups[i]);
        END IF;
    END LOOP;
END $f$;

CREATE FUNCTION var(rel regclass, col name, extra text DEFAULT '') RETURNS text LANGUAGE sql AS $f$
    SELECT format('{VAR :varno 1 :varattno %s :vartype %s :vartypmod %s :varcollid %s %s:varlevelsup 0 :varnosyn 1 :varattnosyn %s :location -1}',
                  attnum, atttypid, atttypmod, attcollation, extra, attnum)
    FROM pg_attribute WHERE attrelid = rel AND attname = col
$f$;
"#;

const TABLES: &str = r#"
CREATE DOMAIN inner_dom AS bigint; CREATE DOMAIN outer_dom AS inner_dom CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE uneven (pad int, id bigint);
CREATE TABLE pg16 (k text);
CREATE TABLE dom (k outer_dom);
CREATE TABLE arr (k text[]);
CREATE TABLE ref (id int);
CREATE TABLE feelings (m mood);
CREATE TABLE local_only (id int);
SELECT reg('uneven', 'h', var('uneven', 'id'), ARRAY[-2147483648, -7, -6, -6, -5, 2147483647], ARRAY[1, 2, 1]);
SELECT reg('pg16', 'h', var('pg16', 'k', ':varnullingrels (b) '), ARRAY[-2147483648, 2147483647], ARRAY[2]);
SELECT reg('dom', 'h', var('dom', 'k'), ARRAY[-2147483648, 0, 1, 2147483647], ARRAY[1, 2]);
SELECT reg('arr', 'h', var('arr', 'k'), ARRAY[-2147483648, -1073741825, -1073741824, -1, 0, 1073741823, 1073741824, 2147483647], ARRAY[1, 2, 1, 2]);
SELECT reg('ref', 'n', NULL, NULL, ARRAY[1, 2, 3], 't', 2);
SELECT reg('feelings', 'h', var('feelings', 'm'), ARRAY[-2147483648, 2147483647], ARRAY[1]);
"#;

#[tokio::test]
async fn catalog_without_citus_functions_loads() {
    let (_db, client, addr) = setup("hand_catalog", &format!("{CATALOG}{TABLES}")).await;
    let topo = Topology::load(
        &client,
        &addr,
        &["uneven", "pg16", "dom", "arr", "ref", "local_only"],
    )
    .await
    .unwrap();
    let cat = topo.citus.as_ref().unwrap();
    assert_eq!(cat.schema, "public");
    assert!(!cat.has_lock_shard_metadata && !cat.has_dist_schema);
    // The inactive primary is listed (it just gets no writes), the secondary is not; the
    // target itself is added for the table Citus does not know (no group 0 in pg_dist_node).
    let ports: Vec<u16> = topo.nodes.iter().map(|n| n.port).collect();
    assert_eq!(ports, [7001, 7002, 7003, addr.port]);
    let local = &topo.tables[5];
    assert_eq!(local.kind, TableKind::Plain);
    assert_eq!(
        topo.shard_nodes(&local.shards[0])
            .map(|n| n.port)
            .collect::<Vec<_>>(),
        [addr.port]
    );

    let uneven = &topo.tables[0];
    let col = uneven.dist_column.as_ref().unwrap();
    assert_eq!((col.name.as_str(), col.attnum), ("id", 2));
    assert_eq!(
        uneven.shards.iter().map(|s| s.range).collect::<Vec<_>>(),
        [Some((i32::MIN, -7)), Some((-6, -6)), Some((-5, i32::MAX))]
    );
    // hashint8 values around the single-value shard: find ints hashing to -7, -6, -5 is not
    // practical; route hashes directly instead.
    assert_eq!(
        [-7, -6, -5].map(|h| uneven.router.route_hash(h).unwrap()),
        [0, 1, 2]
    );

    assert_eq!(topo.tables[1].dist_column.as_ref().unwrap().type_oid, 25);
    let dom = topo.tables[2].dist_column.as_ref().unwrap();
    assert_eq!(
        (dom.type_name.as_str(), dom.base_type_oid),
        ("outer_dom", 20)
    );
    assert_eq!(topo.tables[2].router.kernel(), Some(&HashKernel::Int8));

    // ROUTING.md §3.9: text[] '{a,b,c}' -> shard index 3, '{d,e,f}' -> 1 of 4 uniform shards.
    let arr = &topo.tables[3];
    assert_eq!(arr.route_text(Some(b"{a,b,c}")), Ok(3));
    assert_eq!(arr.route_text(Some(b"{d,e,f}")), Ok(1));

    let reference = &topo.tables[4];
    assert_eq!(reference.kind, TableKind::Reference);
    assert_eq!(
        topo.shard_nodes(&reference.shards[0])
            .map(|n| n.port)
            .collect::<Vec<_>>(),
        [7001, 7002]
    );
}

async fn load_err(client: &Client, addr: &TargetAddr, table: &str) -> String {
    match Topology::load(client, addr, &[table]).await {
        Ok(_) => panic!("table {table} should be refused"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn invalid_tables_are_refused_at_startup() {
    let setup_sql = format!(
        "{CATALOG}
         CREATE COLLATION nondet (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE TABLE app (id int); CREATE TABLE j (doc json); CREATE TABLE gap (id int);
         CREATE TABLE nd (k text COLLATE nondet); CREATE TABLE dropped (a int, b int);
         CREATE TABLE on_inactive (id int); CREATE TABLE no_group (id int); CREATE TABLE two_refs (id int);
         SELECT reg('app', 'a', var('app', 'id'), NULL, ARRAY[1], 'c', 0);
         SELECT reg('j', 'h', var('j', 'doc'), ARRAY[-2147483648, 2147483647], ARRAY[1]);
         SELECT reg('gap', 'h', var('gap', 'id'), ARRAY[-2147483648, 0, 2, 2147483647], ARRAY[1, 2]);
         SELECT reg('nd', 'h', var('nd', 'k'), ARRAY[-2147483648, 2147483647], ARRAY[1]);
         SELECT reg('dropped', 'h', var('dropped', 'b'), ARRAY[-2147483648, 2147483647], ARRAY[1]);
         ALTER TABLE dropped DROP COLUMN b;
         SELECT reg('on_inactive', 'h', var('on_inactive', 'id'), ARRAY[-2147483648, 0, 1, 2147483647], ARRAY[1, 3]);
         SELECT reg('no_group', 'n', NULL, NULL, ARRAY[9], 's', 5);
         SELECT reg('two_refs', 'n', NULL, NULL, ARRAY[1], 's', 6);
         INSERT INTO pg_dist_shard SELECT 'two_refs', 999999, 't', NULL, NULL;"
    );
    let (_db, client, addr) = setup("bad_catalog", &setup_sql).await;
    let cases = [
        (
            "app",
            "table \"public.app\" uses partition method 'a', which pgwarp does not support",
        ),
        (
            "j",
            "table \"public.j\": cannot hash distribution column \"doc\" of type json: type json has no hash function that pgwarp implements",
        ),
        (
            "gap",
            "table \"public.gap\": gap in shard ranges between 0 and 2",
        ),
        (
            "nd",
            "table \"public.nd\": distribution column \"k\" uses non-deterministic collation",
        ),
        (
            "dropped",
            "table \"public.dropped\": distribution column (attnum 2) is dropped",
        ),
        ("on_inactive", "is placed on inactive node 127.0.0.1:7003"),
        (
            "no_group",
            "is placed in node group 9, which has no primary node",
        ),
        (
            "two_refs",
            "table \"public.two_refs\": single-shard table must have exactly one shard, found 2",
        ),
    ];
    for (table, want) in cases {
        let got = load_err(&client, &addr, table).await;
        assert!(
            got.contains(want),
            "{table}: {got:?} does not contain {want:?}"
        );
    }
    // A failed load leaves the connection usable (its snapshot transaction was rolled back).
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn watch_notices_moves_nodes_and_enum_labels() {
    let (_db, client, addr) = setup("watch_catalog", &format!("{CATALOG}{TABLES}")).await;
    let topo = Topology::load(&client, &addr, &["uneven", "feelings"])
        .await
        .unwrap();
    let watch = TopologyWatch::new(&topo);
    assert_eq!(watch.digest().len(), 32);
    let changes = [
        "UPDATE pg_dist_placement SET groupid = 2 WHERE shardid = (SELECT min(shardid) FROM pg_dist_shard)",
        "UPDATE pg_dist_node SET nodeport = 7004 WHERE nodeid = 3",
        "ALTER TYPE mood ADD VALUE 'meh'",
        "UPDATE pg_dist_shard SET shardmaxvalue = '-8' WHERE shardmaxvalue = '-7'",
    ];
    let mut current = watch;
    for change in changes {
        assert_eq!(
            current.check(&client).await.unwrap(),
            TopologyStatus::Unchanged
        );
        client.batch_execute(change).await.unwrap();
        assert_eq!(
            current.check(&client).await.unwrap(),
            TopologyStatus::Changed,
            "{change}"
        );
        match current.reload(&client, &addr).await {
            Ok(t) => current = TopologyWatch::new(&t),
            // The last change opens a gap: the reload refuses it.
            Err(e) => {
                assert!(
                    e.to_string()
                        .contains("gap in shard ranges between -8 and -6"),
                    "{e}"
                );
                return;
            }
        }
    }
    panic!("the range change was not refused");
}
