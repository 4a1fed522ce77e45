//! Source management over an ordinary connection: idempotent publications, slot state and lag,
//! server capabilities.

mod source_support;

use pgwarp::conn;
use pgwarp::source::admin::{
    PublicationChange, PublicationScope, QualifiedName, check_ready_for_replication,
    current_wal_lsn, drop_publication, drop_slot_if_exists, ensure_publication, publication_tables,
    server_info, slot_info,
};
use pgwarp::source::{CreateSlotOptions, ReplicationClient, SnapshotAction, StreamOptions};
use pgwarp_tests::PgServer;
use source_support::config;

fn names(v: &[(&str, &str)]) -> Vec<QualifiedName> {
    v.iter().map(|(s, t)| QualifiedName::new(*s, *t)).collect()
}

#[tokio::test]
async fn publications_are_created_and_updated_idempotently() {
    let db = PgServer::shared().create_database("src_admin_pub").unwrap();
    db.execute(
        "CREATE SCHEMA app; CREATE SCHEMA \"Odd Schema\";
         CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE public.b (id int PRIMARY KEY);
         CREATE TABLE app.c (id int PRIMARY KEY); CREATE TABLE \"Odd Schema\".\"D\" (id int PRIMARY KEY);",
    )
    .unwrap();
    let cfg = config(&db.conn_string());
    let (client, _conn) = conn::connect(&cfg).await.unwrap();
    let pub_name = "pgwarp \"pub\"";

    let ab = PublicationScope::Tables(names(&[("public", "a"), ("public", "b")]));
    assert_eq!(
        ensure_publication(&client, pub_name, &ab).await.unwrap(),
        PublicationChange::Created
    );
    assert_eq!(
        ensure_publication(&client, pub_name, &ab).await.unwrap(),
        PublicationChange::Unchanged
    );
    assert_eq!(
        publication_tables(&client, pub_name)
            .await
            .unwrap()
            .unwrap(),
        names(&[("public", "a"), ("public", "b")])
    );

    let ad = PublicationScope::Tables(names(&[("public", "a"), ("Odd Schema", "D")]));
    assert_eq!(
        ensure_publication(&client, pub_name, &ad).await.unwrap(),
        PublicationChange::Altered
    );
    assert_eq!(
        publication_tables(&client, pub_name)
            .await
            .unwrap()
            .unwrap(),
        names(&[("Odd Schema", "D"), ("public", "a")])
    );

    // PG 15: whole schemas, including tables created afterwards
    let schemas = PublicationScope::Schemas(vec!["app".to_owned(), "Odd Schema".to_owned()]);
    assert_eq!(
        ensure_publication(&client, pub_name, &schemas)
            .await
            .unwrap(),
        PublicationChange::Altered
    );
    assert_eq!(
        ensure_publication(&client, pub_name, &schemas)
            .await
            .unwrap(),
        PublicationChange::Unchanged
    );
    db.execute("CREATE TABLE app.later (id int PRIMARY KEY)")
        .unwrap();
    assert_eq!(
        publication_tables(&client, pub_name)
            .await
            .unwrap()
            .unwrap(),
        names(&[("Odd Schema", "D"), ("app", "c"), ("app", "later")])
    );
    let definition: String = db
        .query_scalar("SELECT string_agg(n.nspname, ',' ORDER BY n.nspname) FROM pg_publication_namespace pn JOIN pg_namespace n ON n.oid = pn.pnnspid")
        .unwrap();
    assert_eq!(definition, "Odd Schema,app");

    assert!(drop_publication(&client, pub_name).await.unwrap());
    assert!(!drop_publication(&client, pub_name).await.unwrap());
    assert_eq!(publication_tables(&client, pub_name).await.unwrap(), None);
}

#[tokio::test]
async fn slot_state_lag_and_server_capacity() {
    let db = PgServer::shared()
        .create_database("src_admin_slot")
        .unwrap();
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t;")
        .unwrap();
    let cfg = config(&db.conn_string());
    let (admin, _conn) = conn::connect(&cfg).await.unwrap();

    let info = server_info(&admin).await.unwrap();
    assert_eq!(info.wal_level, "logical");
    assert!(info.version_num >= 150_000, "{}", info.version_num);
    assert_eq!(info.max_replication_slots, 32);
    assert_eq!(info.max_wal_senders, 32);
    assert!(info.role_can_replicate && info.role_is_superuser);
    assert_eq!(info.role, "postgres");
    check_ready_for_replication(&admin, 1).await.unwrap();

    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    let opts = CreateSlotOptions {
        temporary: false,
        snapshot: SnapshotAction::Nothing,
        two_phase: false,
    };
    let slot = client.create_slot("admin_slot", &opts).await.unwrap();
    assert!(slot_info(&admin, "other_slot").await.unwrap().is_none());
    let before = slot_info(&admin, "admin_slot").await.unwrap().unwrap();
    assert_eq!(before.confirmed_flush_lsn, Some(slot.consistent_point));
    assert_eq!(before.plugin.as_deref(), Some("pgoutput"));
    assert_eq!(before.slot_type, "logical");
    assert_eq!(before.database.as_deref(), Some(db.name()));
    assert!(!before.active && !before.temporary && !before.is_invalidated());
    assert_eq!(before.wal_status.as_deref(), Some("reserved"));

    db.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        .unwrap();
    let current = current_wal_lsn(&admin).await.unwrap();
    let info = slot_info(&admin, "admin_slot").await.unwrap().unwrap();
    let lag = info.lag_bytes.unwrap();
    // the lag is measured against the position read in the same query, never before `current`
    assert!(lag >= current.bytes_since(slot.consistent_point).unwrap() as i64);

    let stream = client
        .start_replication(
            "admin_slot",
            slot.consistent_point,
            &StreamOptions::new(["p"]),
        )
        .await
        .unwrap();
    let active = slot_info(&admin, "admin_slot").await.unwrap().unwrap();
    assert!(active.active);
    assert_eq!(active.active_pid, Some(stream.backend_pid()));
    let busy = server_info(&admin).await.unwrap();
    assert!(busy.active_wal_senders >= 1);
    assert!(busy.used_replication_slots >= 1);

    let mut client = stream.stop().await.unwrap();
    client.drop_slot("admin_slot", false).await.unwrap();
    assert!(slot_info(&admin, "admin_slot").await.unwrap().is_none());
    assert!(!drop_slot_if_exists(&admin, "admin_slot").await.unwrap());
}

#[tokio::test]
async fn replication_session_has_fixed_settings_and_identifies_the_system() {
    let db = PgServer::shared()
        .create_database("src_admin_session")
        .unwrap();
    // a database default that the startup packet must override
    db.execute(&format!(
        "ALTER DATABASE {} SET TimeZone = 'Asia/Tokyo'",
        db.name()
    ))
    .unwrap();
    let mut client = ReplicationClient::connect(&config(&db.conn_string()))
        .await
        .unwrap();
    let mut shown = Vec::new();
    for name in [
        "DateStyle",
        "TimeZone",
        "IntervalStyle",
        "extra_float_digits",
        "bytea_output",
        "client_encoding",
        "application_name",
    ] {
        shown.push(client.show(name).await.unwrap());
    }
    assert_eq!(
        shown,
        ["ISO, MDY", "UTC", "postgres", "3", "hex", "UTF8", "pgwarp"]
    );

    let identity = client.identify_system().await.unwrap();
    let system_id: String = db
        .query_scalar("SELECT system_identifier::text FROM pg_control_system()")
        .unwrap();
    assert_eq!(identity.system_id, system_id);
    assert_eq!(identity.timeline, 1);
    assert_eq!(identity.dbname.as_deref(), Some(db.name()));
    let (admin, _conn) = conn::connect(&config(&db.conn_string())).await.unwrap();
    assert!(identity.xlogpos <= current_wal_lsn(&admin).await.unwrap());
    assert!(identity.xlogpos.is_valid());
    assert!(client.server_version_num() >= 150_000);

    // an application_name from the connection string wins
    let named = config(&format!("{} application_name=cdc-1", db.conn_string()));
    let mut client = ReplicationClient::connect(&named).await.unwrap();
    assert_eq!(client.show("application_name").await.unwrap(), "cdc-1");
}
