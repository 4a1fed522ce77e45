//! TLS to the source and to every node of the target, as `docs/security.md` promises:
//!
//! * `sslmode=verify-full` with a CA works end to end: the source, the coordinator and both
//!   workers only let the migration role in over TLS (`hostnossl ... reject`), and the workers
//!   are reached with the coordinator's TLS settings.
//! * Verification really happens on the nodes: a worker whose certificate names another host
//!   stops `check` and `sync` before anything is created, naming the node.
//! * Unverified TLS is used only when asked for: `sslmode=require` without a root certificate
//!   connects; a verifying mode without a root certificate is a configuration error; and with a
//!   root certificate configured, a certificate that fails verification is an error in every
//!   mode, `prefer` included: pgwarp never retries such a connection without TLS.

mod fault_support;

use std::time::Duration;

use fault_support::process::{Pgwarp, child_main};
use fault_support::scenario::Scenario;
use fault_support::tls::{Ca, enable_tls, hba_tls_only_for};
use pgwarp_tests::cluster::ClusterSpec;
use pgwarp_tests::{PasswordEncryption, PgServer};

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

const ROLE: &str = "tls_migrator";
const USERS: &str = "CREATE TABLE users (user_id bigint PRIMARY KEY, name text)";
const PRODUCTS: &str = "CREATE TABLE products (id int PRIMARY KEY, name text)";

fn spec() -> ClusterSpec {
    ClusterSpec::new()
        .distributed("users", USERS, "user_id", 8)
        .reference("products", PRODUCTS)
}

/// A scenario whose four servers require TLS for [`ROLE`]; `cert_names(i)` gives the names
/// of server i's certificate (0 source, 1 coordinator, 2.. workers).
fn tls_scenario(ca: &Ca, cert_names: impl Fn(usize) -> Vec<&'static str>) -> Scenario {
    let mut sc = Scenario::start(&spec(), &format!("{USERS}; {PRODUCTS};"));
    for (i, server) in sc.servers().into_iter().enumerate() {
        let names = cert_names(i);
        enable_tls(server, &ca.server_cert(&names), &hba_tls_only_for(ROLE));
        server
            .create_role(
                ROLE,
                "unused",
                PasswordEncryption::ScramSha256,
                "SUPERUSER REPLICATION",
            )
            .unwrap();
    }
    let root = ca.write(sc.dir.path(), "root.pem");
    let tls = format!(
        "user={ROLE} sslmode=verify-full sslrootcert={}",
        root.display()
    );
    sc.source_conninfo = format!(
        "host=127.0.0.1 port={} dbname={} {tls}",
        sc.source_server.port(),
        sc.source.name()
    );
    sc.target_conninfo = format!(
        "host=127.0.0.1 port={} dbname={} {tls}",
        sc.fixture.coordinator().port,
        sc.fixture.database()
    );
    sc.src(
        "INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 2000) g;
         INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 40) g;",
    );
    sc
}

fn good_names(_: usize) -> Vec<&'static str> {
    vec!["127.0.0.1", "localhost"]
}

#[test]
fn verify_full_to_the_source_and_every_node_syncs_and_verifies() {
    let ca = Ca::new("pgwarp test CA");
    let sc = tls_scenario(&ca, good_names);
    // the role really cannot get in without TLS
    let plain = format!(
        "host=127.0.0.1 port={} user={ROLE} dbname={} sslmode=disable",
        sc.fixture.workers()[0].port,
        sc.fixture.database()
    );
    let refused = Pgwarp::new(&[
        "check", "--source", &plain, "--target", &plain, "--tables", "t",
    ])
    .run();
    assert!(
        refused.stdout.contains("pg_hba.conf rejects connection")
            || refused.stderr.contains("pg_hba.conf rejects connection"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );

    let config = sc.config_file(&["users", "products"], "");
    let config = config.to_str().unwrap();
    Pgwarp::new(&["check", "-c", config]).run().expect_success();

    let mut sync = sc.spawn_sync(std::path::Path::new(config), &[], "info");
    sc.wait_caught_up(&mut sync, Duration::from_secs(300));
    sc.src(
        "INSERT INTO users SELECT g, 'late ' || g FROM generate_series(2001, 2300) g;
         UPDATE users SET name = 'renamed' WHERE user_id % 7 = 0;
         DELETE FROM products WHERE id > 30;",
    );
    sc.wait_caught_up(&mut sync, Duration::from_secs(300));
    // every pgwarp session on every node is encrypted (the workers included)
    for node in sc.fixture.nodes() {
        let sessions: Vec<Vec<Option<String>>> = node
            .query_rows(&format!(
                "SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.usename = '{ROLE}'"
            ))
            .unwrap();
        assert!(
            sessions.iter().all(|r| r[0].as_deref() == Some("true")),
            "node {}:{} has an unencrypted pgwarp session: {sessions:?}",
            node.host,
            node.port
        );
    }
    sync.interrupt().expect_success();
    sc.assert_synced("users");
    sc.assert_synced("products");
    Pgwarp::new(&["verify", "-c", config])
        .run()
        .expect_success();
}

#[test]
fn a_worker_certificate_for_another_host_stops_the_sync_naming_the_node() {
    let ca = Ca::new("pgwarp test CA");
    // server 3 is the second worker
    let sc = tls_scenario(&ca, |i| {
        if i == 3 {
            vec!["worker-two.invalid"]
        } else {
            vec!["127.0.0.1", "localhost"]
        }
    });
    let bad_port = sc.workers()[1].port();
    let config = sc.config_file(&["users", "products"], "");
    let config = config.to_str().unwrap();
    for command in ["check", "sync"] {
        let run = Pgwarp::new(&[command, "-c", config]).run();
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert!(!run.status.success(), "{command} succeeded:\n{all}");
        assert!(
            all.contains(&format!("127.0.0.1:{bad_port}")) && all.contains("TLS"),
            "{command}: the failure does not name the node and TLS:\n{all}"
        );
        assert!(
            all.contains("not valid for name"),
            "{command}: the reason is not the certificate's name:\n{all}"
        );
    }
    // nothing was created on the source
    let slots: i64 = sc.src_scalar("SELECT count(*) FROM pg_replication_slots");
    assert_eq!(slots, 0);
}

/// One server with TLS from `ca` that lets [`ROLE`] in with or without TLS.
fn lenient_server(ca: &Ca) -> PgServer {
    let server = PgServer::start().unwrap();
    enable_tls(
        &server,
        &ca.server_cert(&["127.0.0.1", "localhost"]),
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
    );
    server
        .create_role(
            ROLE,
            "unused",
            PasswordEncryption::ScramSha256,
            "SUPERUSER REPLICATION",
        )
        .unwrap();
    server
}

/// Runs `pgwarp check` against `server` with `extra` connection settings (and environment),
/// returning (success, output).
fn check_with(server: &PgServer, extra: &str, env: &[(&str, &str)]) -> (bool, String) {
    let db = server.create_database("tls_modes").unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    let conn = format!(
        "host=127.0.0.1 port={} user={ROLE} dbname={} {extra}",
        server.port(),
        db.name()
    );
    let mut p = Pgwarp::new(&[
        "check", "--source", &conn, "--target", &conn, "--tables", "t",
    ]);
    for (k, v) in env {
        p = p.env(k, v);
    }
    let run = p.run();
    (
        run.status.success(),
        format!("{}\n{}", run.stdout, run.stderr),
    )
}

#[test]
fn unverified_tls_only_when_asked_for() {
    let trusted = Ca::new("pgwarp test CA");
    let other = Ca::new("some other CA");
    let server = lenient_server(&other);
    let dir = tempfile::tempdir().unwrap();
    let root = trusted.write(dir.path(), "root.pem");
    let root = root.display();

    // asked for: require without a root certificate encrypts without verifying
    let (ok, out) = check_with(&server, "sslmode=require", &[]);
    assert!(ok, "sslmode=require without a CA must connect:\n{out}");
    let (ok, out) = check_with(&server, "", &[("PGSSLMODE", "require")]);
    assert!(ok, "PGSSLMODE=require without a CA must connect:\n{out}");

    // a verifying mode without a root certificate: a configuration error, never a downgrade
    for mode in ["verify-ca", "verify-full"] {
        let (ok, out) = check_with(&server, &format!("sslmode={mode}"), &[]);
        assert!(!ok, "sslmode={mode} without a CA must fail:\n{out}");
        assert!(out.contains("root certificate"), "{mode}:\n{out}");
    }

    // a configured root certificate is used in every mode, and a failed verification is an
    // error: never a retry in plain text (libpq's prefer would retry)
    for mode in ["require", "prefer", "verify-ca", "verify-full"] {
        let (ok, out) = check_with(&server, &format!("sslmode={mode} sslrootcert={root}"), &[]);
        assert!(
            !ok,
            "sslmode={mode} with a CA that did not sign the server's certificate connected:\n{out}"
        );
        assert!(
            out.contains("UnknownIssuer") || out.contains("certificate"),
            "{mode}:\n{out}"
        );
    }
    // the same with the default root certificate file, ~/.postgresql/root.crt, and no sslmode
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    trusted.write(&home.path().join(".postgresql"), "root.crt");
    let (ok, out) = check_with(&server, "", &[("HOME", home.path().to_str().unwrap())]);
    assert!(
        !ok,
        "a default root.crt that did not sign the server's certificate was ignored:\n{out}"
    );
}

#[test]
fn default_sslmode_encrypts_when_the_server_offers_tls() {
    let ca = Ca::new("pgwarp test CA");
    let server = lenient_server(&ca);
    let db = server.create_database("tls_default").unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)").unwrap();
    let conn = format!(
        "host=127.0.0.1 port={} user={ROLE} dbname={} application_name=tls_default_probe",
        server.port(),
        db.name()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let encrypted: bool = runtime.block_on(async {
        let cfg = pgwarp::conn::ConnConfig::parse(&conn).unwrap();
        let (client, _task) = pgwarp::conn::connect(&cfg).await.unwrap();
        client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert!(
        encrypted,
        "sslmode=prefer (the default) did not use the server's TLS"
    );
}
