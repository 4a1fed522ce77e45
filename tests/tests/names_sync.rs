//! A schema full of hostile names (`fault_support::names`: quotes, spaces, mixed case,
//! reserved words, backslashes, dots, commas, multibyte characters, shard names clipped near
//! 63 bytes, a tenant schema with a quote and a dot) syncs into the Citus-shaped cluster and
//! verifies, through the real command line: `pgwarp sync --until-caught-up` (publication and
//! slot creation, snapshot COPY, streamed inserts, updates, deletes, moves and a truncate) and
//! `pgwarp verify`, with a publication name that needs quoting too.

mod fault_support;

use std::path::PathBuf;

use fault_support::names;
use fault_support::process::{Pgwarp, child_main};
use fault_support::scenario::Scenario;
use pgwarp_tests::cluster::ClusterSpec;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

const PUBLICATION: &str = "Pub \"x\" Größe\\,y";

/// The hostile-names scenario with its initial rows, and a config file syncing every table
/// under [`PUBLICATION`]: (spec, scenario, tenant schema, config file).
fn hostile_scenario() -> (ClusterSpec, Scenario, String, PathBuf) {
    let spec = names::spec();
    let sc = Scenario::start(&spec, &names::main_ddl());
    let tenant = sc.fixture.tenant_schema(names::TENANT).unwrap().to_owned();
    sc.source
        .execute(&names::tenant_source_ddl(&tenant))
        .unwrap();
    sc.src(&names::initial_rows());
    sc.source.execute(&names::tenant_rows(&tenant)).unwrap();
    let tables: Vec<String> = spec
        .tables()
        .iter()
        .map(|t| sc.fixture.qualified(&t.name).unwrap())
        .collect();
    let config = sc.config_file_for(&tables, PUBLICATION, "");
    (spec, sc, tenant, config)
}

#[test]
fn schema_of_hostile_names_syncs_streams_and_verifies() {
    let (spec, sc, tenant, config) = hostile_scenario();
    let config = config.to_str().unwrap();

    let first = Pgwarp::new(&["sync", "-c", config, "--until-caught-up"]).run();
    first.expect_success();
    assert!(first.stdout.contains("caught up"), "{}", first.stdout);
    for t in spec.tables() {
        sc.assert_synced(&t.name);
    }
    // the publication exists under its exact name and publishes exactly these tables
    let published: i64 = sc.src_scalar(&format!(
        "SELECT count(*) FROM pg_publication_tables WHERE pubname = '{}'",
        PUBLICATION.replace('\'', "''")
    ));
    assert_eq!(published, spec.tables().len() as i64);

    sc.src(&names::stream_changes(&tenant));
    let second = Pgwarp::new(&["sync", "-c", config, "--until-caught-up"]).run();
    second.expect_success();
    for t in spec.tables() {
        sc.assert_synced(&t.name);
    }

    let verify = Pgwarp::new(&["verify", "-c", config, "--json"]).run();
    verify.expect_success();
    let report: serde_json::Value = serde_json::from_str(&verify.stdout)
        .unwrap_or_else(|e| panic!("verify --json: {e}\n{}", verify.stdout));
    assert_eq!(report["equal"], true, "{report:#}");
    let reported: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(reported, vec!["equal"; spec.tables().len()], "{report:#}");

    // status and verify find the tables from the sync's stored state too (no table list):
    // the stored names must be turned back into SQL without splitting at a dot
    let status = Pgwarp::new(&[
        "status",
        "--source",
        &sc.source_conninfo,
        "--target",
        &sc.target_conninfo,
        "--slot",
        &sc.slot,
        "--json",
    ])
    .run();
    status.expect_success();
    let report: serde_json::Value = serde_json::from_str(&status.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}\n{}", status.stdout));
    assert_eq!(
        report["tables"].as_array().map(Vec::len),
        Some(spec.tables().len()),
        "{report:#}"
    );
    let verify = Pgwarp::new(&[
        "verify",
        "--source",
        &sc.source_conninfo,
        "--target",
        &sc.target_conninfo,
        "--slot",
        &sc.slot,
    ])
    .run();
    verify.expect_success();
}

#[test]
fn verify_finds_a_difference_in_a_hostile_shard_name() {
    let (_, sc, _, config) = hostile_scenario();
    let config = config.to_str().unwrap();
    Pgwarp::new(&["sync", "-c", config, "--until-caught-up"])
        .run()
        .expect_success();

    // remove one row behind pgwarp's back, in a clipped-and-hashed shard of the long name
    let long = names::long_name();
    let shard = sc.fixture.shards(&long).unwrap().remove(0);
    let node = sc.fixture.node_of_group(shard.groups[0]).unwrap();
    node.execute(&format!(
        "DELETE FROM {} WHERE ctid = (SELECT min(ctid) FROM {})",
        shard.shard_table, shard.shard_table
    ))
    .unwrap();

    let verify = Pgwarp::new(&["verify", "-c", config, "--json"]).run();
    assert_eq!(
        verify.status.code(),
        Some(1),
        "verify must report a difference\n{}\n{}",
        verify.stdout,
        verify.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&verify.stdout).unwrap();
    let mismatched: Vec<String> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "mismatch")
        .map(|t| t["table"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(mismatched, [format!("{}.{long}", sc.schema)], "{report:#}");
}
