//! Hostile names through the topology loader and the router: tables, columns and a tenant
//! schema named with quotes, spaces, mixed case, reserved words, backslashes, dots and
//! multibyte characters, incl. names whose shard names Citus clips and hashes near the
//! 63-byte limit (`fault_support::names`).
//!
//! The engine's shard names are checked against the harness's own implementation of the
//! Citus rule, and every qualified shard name the engine produces is used as SQL on the node
//! that holds the shard: a name quoted wrongly fails there.

mod fault_support;

use fault_support::names;
use pgwarp::citus::{TableKind, TargetAddr, Topology};
use pgwarp_tests::cluster::{CitusCluster, CitusFixture};
use tokio_postgres::Client;

async fn connect(conn: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

fn target(f: &CitusFixture) -> TargetAddr {
    TargetAddr {
        host: f.coordinator().host.clone(),
        port: f.coordinator().port,
    }
}

fn spec_names(f: &CitusFixture) -> Vec<String> {
    f.spec().tables().iter().map(|t| t.name.clone()).collect()
}

#[tokio::test]
async fn hostile_names_load_with_citus_shard_names() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster.create(&names::spec()).unwrap();
    let names = spec_names(&f);
    let qualified: Vec<String> = names.iter().map(|t| f.qualified(t).unwrap()).collect();
    let refs: Vec<&str> = qualified.iter().map(String::as_str).collect();
    let client = connect(f.coordinator_conn_string()).await;
    let topo = Topology::load(&client, &target(&f), &refs)
        .await
        .expect("the topology of hostile names loads");

    let kinds: Vec<TableKind> = topo.tables.iter().map(|t| t.kind).collect();
    use TableKind::*;
    assert_eq!(kinds, [Hash, Reference, Hash, Hash, Hash, Tenant]);
    for (t, name) in topo.tables.iter().zip(&names) {
        assert_eq!(&t.name, name, "names come back exactly, not case-folded");
        assert_eq!(t.schema, f.schema_of(name).unwrap());
        let want = f.shards(name).unwrap();
        assert_eq!(t.shards.len(), want.len(), "{name}: shard count");
        for (got, want) in t.shards.iter().zip(&want) {
            assert_eq!(got.shard_id, want.shardid, "{name}: shard order");
            assert_eq!(
                got.rel_name,
                f.shard_table_name(name, got.shard_id).unwrap(),
                "{name}: shard table name"
            );
            assert_eq!(got.qualified_name, want.shard_table, "{name}: quoting");
            assert!(got.rel_name.len() <= 63, "{}", got.rel_name);
            // the engine's quoted name is valid SQL on every node holding the shard
            for node in topo.shard_nodes(got) {
                let fixture_node = f.node_of_group(node.group_id).unwrap();
                let n: i64 = fixture_node
                    .query_scalar(&format!("SELECT count(*) FROM {}", got.qualified_name))
                    .unwrap_or_else(|e| panic!("{}: {e}", got.qualified_name));
                assert_eq!(n, 0);
            }
        }
    }

    // the distribution columns, reserved or quoted, are found by name
    let dist: Vec<Option<&str>> = topo
        .tables
        .iter()
        .map(|t| t.dist_column.as_ref().map(|c| c.name.as_str()))
        .collect();
    assert_eq!(
        dist,
        [
            Some("user"),
            None,
            Some("ключ"),
            Some("ID"),
            Some("k\"ey"),
            None
        ]
    );

    // the long multibyte name is clipped on a character boundary and hashed
    let long = &topo.tables[2];
    for shard in &long.shards {
        assert!(
            shard.rel_name.starts_with(&"表".repeat(15)),
            "{}",
            shard.rel_name
        );
        assert!(
            !shard.rel_name.starts_with(&"表".repeat(16)),
            "{}",
            shard.rel_name
        );
        assert!(shard.rel_name.ends_with(&format!("_{}", shard.shard_id)));
    }
    // the 56-byte name still gets the plain suffix, ending exactly at 63 bytes
    let boundary = &topo.tables[3];
    for shard in &boundary.shards {
        assert_eq!(
            shard.rel_name,
            format!("{}_{}", names::boundary_name(), shard.shard_id)
        );
    }
}

#[tokio::test]
async fn hostile_distribution_values_route_as_citus_does() {
    let cluster = CitusCluster::shared_or_start(2).unwrap();
    let f = cluster.create(&names::spec()).unwrap();
    let names = spec_names(&f);
    let qualified: Vec<String> = names.iter().map(|t| f.qualified(t).unwrap()).collect();
    let refs: Vec<&str> = qualified.iter().map(String::as_str).collect();
    let client = connect(f.coordinator_conn_string()).await;
    let topo = Topology::load(&client, &target(&f), &refs).await.unwrap();

    // text keys with quotes, backslashes and multibyte characters (table ODD, column k"ey)
    let odd = &topo.tables[4];
    for value in ["key '1\\", "ключ \"x\"", "表", "", "a,b.c", "it''s"] {
        let index = odd.route_text(Some(value.as_bytes())).unwrap();
        let literal = format!("'{}'::text", value.replace('\'', "''"));
        let want = f.shard_id_for(names::ODD, &literal).unwrap();
        assert_eq!(odd.shards[index].shard_id, want, "value {value:?}");
    }
    // bigint keys of the multibyte-named tables
    let long = &topo.tables[2];
    for value in [1i64, 42, -7, 1 << 40] {
        let index = long.route_text(Some(value.to_string().as_bytes())).unwrap();
        let want = f
            .shard_id_for(&names::long_name(), &format!("{value}::bigint"))
            .unwrap();
        assert_eq!(long.shards[index].shard_id, want, "value {value}");
    }
}
