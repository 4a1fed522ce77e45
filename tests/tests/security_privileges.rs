//! Least privilege, as `docs/security.md` documents it:
//!
//! * Source: a role with `LOGIN REPLICATION`, `USAGE` on the schema and `SELECT` on the
//!   migrated tables, plus either a publication an operator created beforehand (as the tables'
//!   owner) with exactly those tables, or ownership of the tables and `CREATE` on the database
//!   so pgwarp creates the publication itself.
//! * Target (coordinator and every worker): `CONNECT`, `USAGE` on the schema, `SELECT, INSERT,
//!   UPDATE, DELETE, TRUNCATE` on the tables (the shells and every shard table), `CREATE` on
//!   the database for pgwarp's own `pgwarp` schema, and `SET` on `session_replication_role`.
//!
//! With exactly that, a sync snapshots, streams and verifies. Without any one of it, `check`
//! and `sync` stop with a message naming what is missing and the GRANT that fixes it, and
//! nothing is created on the source.

mod fault_support;

use fault_support::process::{Pgwarp, child_main};
use fault_support::scenario::Scenario;
use pgwarp_tests::cluster::ClusterSpec;
use pgwarp_tests::quote_ident;

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";
const PRODUCTS: &str = "CREATE TABLE products (id int PRIMARY KEY, name text)";
const SOURCE_ROLE: &str = "src_min";
const TARGET_ROLE: &str = "dst_min";

/// What to leave out of the least-privilege grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    Nothing,
    Replication,
    SelectOnProducts,
    /// No publication created beforehand and no ownership of the tables.
    Publication,
    /// No INSERT on the shard tables of one worker.
    InsertOnAWorker,
    /// No CREATE on the coordinator's database (for the `pgwarp` schema).
    CreateOnTarget,
    SetReplicationRole,
}

fn scenario(missing: Missing, source_owns_tables: bool) -> Scenario {
    let spec = ClusterSpec::new()
        .distributed("users", USERS, "user_id", 4)
        .reference("products", PRODUCTS);
    let mut sc = Scenario::start(&spec, &format!("{USERS}; {PRODUCTS};"));
    let schema = quote_ident(&sc.schema);
    sc.src(
        "INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 1000) g;
         INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 20) g;",
    );

    // source
    let replication = if missing == Missing::Replication {
        ""
    } else {
        "REPLICATION"
    };
    let mut grants = format!(
        "CREATE ROLE {SOURCE_ROLE} LOGIN {replication};
         GRANT USAGE ON SCHEMA {schema} TO {SOURCE_ROLE};
         GRANT SELECT ON {schema}.users TO {SOURCE_ROLE};"
    );
    if missing != Missing::SelectOnProducts {
        grants.push_str(&format!(
            "GRANT SELECT ON {schema}.products TO {SOURCE_ROLE};"
        ));
    }
    if source_owns_tables {
        grants.push_str(&format!(
            "ALTER TABLE {schema}.users OWNER TO {SOURCE_ROLE};
             ALTER TABLE {schema}.products OWNER TO {SOURCE_ROLE};
             GRANT CREATE ON DATABASE {} TO {SOURCE_ROLE};",
            quote_ident(sc.source.name())
        ));
    } else if missing != Missing::Publication {
        // the operator (the tables' owner) creates the publication beforehand
        grants.push_str(&format!(
            "CREATE PUBLICATION {} FOR TABLE {schema}.users, {schema}.products;",
            sc.slot
        ));
    }
    sc.source.execute(&grants).unwrap();

    // target: the coordinator and every worker
    let db = quote_ident(sc.fixture.database());
    for (i, node) in sc.fixture.nodes().iter().enumerate() {
        let mut sql = format!(
            "CREATE ROLE {TARGET_ROLE} LOGIN;
             GRANT USAGE ON SCHEMA {schema} TO {TARGET_ROLE};
             GRANT SELECT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {schema} TO {TARGET_ROLE};"
        );
        if !(missing == Missing::InsertOnAWorker && i == 2) {
            sql.push_str(&format!(
                "GRANT INSERT ON ALL TABLES IN SCHEMA {schema} TO {TARGET_ROLE};"
            ));
        }
        if !(missing == Missing::CreateOnTarget && i == 0) {
            sql.push_str(&format!("GRANT CREATE ON DATABASE {db} TO {TARGET_ROLE};"));
        }
        if missing != Missing::SetReplicationRole {
            sql.push_str(&format!(
                "GRANT SET ON PARAMETER session_replication_role TO {TARGET_ROLE};"
            ));
        }
        node.execute(&sql).unwrap();
    }
    sc.source_conninfo =
        format!("{} user={SOURCE_ROLE}", sc.source.conn_string()).replace("user=postgres ", "");
    sc.target_conninfo = format!(
        "{} user={TARGET_ROLE}",
        sc.fixture.coordinator_conn_string()
    )
    .replace("user=postgres ", "");
    sc
}

fn sync_and_verify(sc: &Scenario) {
    let config = sc.config_file(&["users", "products"], "");
    let config = config.to_str().unwrap();
    Pgwarp::new(&["check", "-c", config]).run().expect_success();
    Pgwarp::new(&["sync", "-c", config, "--until-caught-up"])
        .run()
        .expect_success();
    sc.src(
        "INSERT INTO users SELECT g, 'late' FROM generate_series(1001, 1200) g;
         UPDATE users SET name = 'x' WHERE user_id % 5 = 0;
         DELETE FROM users WHERE user_id % 9 = 0;
         TRUNCATE products;
         INSERT INTO products VALUES (1, 'again');",
    );
    Pgwarp::new(&["sync", "-c", config, "--until-caught-up"])
        .run()
        .expect_success();
    sc.assert_synced("users");
    sc.assert_synced("products");
    Pgwarp::new(&["verify", "-c", config])
        .run()
        .expect_success();
}

#[test]
fn least_privileged_roles_with_a_publication_made_by_the_operator_sync() {
    let sc = scenario(Missing::Nothing, false);
    sync_and_verify(&sc);
}

#[test]
fn a_source_role_owning_the_tables_creates_the_publication_itself() {
    let sc = scenario(Missing::Nothing, true);
    sync_and_verify(&sc);
    let tables: i64 = sc.src_scalar(&format!(
        "SELECT count(*) FROM pg_publication_tables WHERE pubname = '{}'",
        sc.slot
    ));
    assert_eq!(tables, 2);
}

/// Runs `check` and `sync` without `missing`; both must fail and say every needle; nothing
/// may be left on the source.
fn assert_refused(missing: Missing, needles: &[&str]) {
    let sc = scenario(missing, false);
    let config = sc.config_file(&["users", "products"], "");
    let config = config.to_str().unwrap();
    for command in ["check", "sync"] {
        let run = Pgwarp::new(&[command, "-c", config]).run();
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert!(
            !run.status.success(),
            "{missing:?}: {command} succeeded:\n{all}"
        );
        for needle in needles {
            assert!(
                all.contains(needle),
                "{missing:?}: {command} does not say {needle:?}:\n{all}"
            );
        }
    }
    let slots: i64 = sc.src_scalar("SELECT count(*) FROM pg_replication_slots");
    assert_eq!(slots, 0, "{missing:?}: a slot was left on the source");
}

#[test]
fn source_role_without_replication_is_told_to_grant_it() {
    assert_refused(
        Missing::Replication,
        &["ALTER ROLE", "src_min", "REPLICATION"],
    );
}

#[test]
fn source_role_without_select_is_told_which_table_and_grant() {
    assert_refused(
        Missing::SelectOnProducts,
        &["products", "GRANT SELECT ON", "src_min"],
    );
}

#[test]
fn source_role_that_cannot_create_the_publication_is_told_both_ways_out() {
    assert_refused(Missing::Publication, &["CREATE PUBLICATION", "owner"]);
}

#[test]
fn target_role_without_insert_on_a_worker_is_told_which_node_and_grant() {
    assert_refused(
        Missing::InsertOnAWorker,
        &["GRANT INSERT ON", "dst_min", "users"],
    );
}

#[test]
fn target_role_without_create_on_the_database_is_told_to_grant_it() {
    assert_refused(
        Missing::CreateOnTarget,
        &["GRANT CREATE ON DATABASE", "dst_min"],
    );
}

#[test]
fn target_role_that_cannot_set_the_replication_role_is_told_to_grant_it() {
    assert_refused(
        Missing::SetReplicationRole,
        &["GRANT SET ON PARAMETER session_replication_role", "dst_min"],
    );
}
