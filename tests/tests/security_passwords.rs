//! Passwords never leave pgwarp: wherever the password comes from (the connection string in
//! keyword or URI form, `PGPASSWORD`, the password file), it appears in none of pgwarp's
//! output: logs at `trace` level (text and JSON), `sync`, `check`, `status` and `verify`
//! output (text and `--json`), the Prometheus page, and the messages of failures (wrong
//! password, unreachable server, malformed connection strings).
//!
//! The server authenticates with SCRAM over TCP, so a run that succeeds proves the password
//! was used; every byte pgwarp printed is then searched for it.

mod fault_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fault_support::process::{Finished, Pgwarp, Running, child_main};
use fault_support::scenario::wait_for;
use pgwarp_tests::sync_config::toml_string;
use pgwarp_tests::{PasswordEncryption, PgServer, ServerOptions, TestDb, unique_name};

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

/// The password of the test role: distinctive, so any copy of it is found.
const PASSWORD: &str = "Zq7LeakCanary4Pw";
/// A wrong password, which must not be printed either.
const WRONG: &str = "Wr0ngCanary9Xk";

const DDL: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, balance numeric);";

/// A server that wants SCRAM passwords over TCP (the harness itself uses the unix socket),
/// a role with that password, and a source and a target database with the same table.
struct Setup {
    source: TestDb,
    target: TestDb,
    role: String,
    slot: String,
    dir: tempfile::TempDir,
    server: PgServer,
}

impl Setup {
    fn new() -> Setup {
        let server = PgServer::start_with(
            ServerOptions::default()
                .hba("host all all 127.0.0.1/32 scram-sha-256\n")
                .setting("password_encryption", "scram-sha-256"),
        )
        .unwrap();
        let role = unique_name("migrator");
        server
            .create_role(
                &role,
                PASSWORD,
                PasswordEncryption::ScramSha256,
                "SUPERUSER REPLICATION",
            )
            .unwrap();
        let source = server.create_database("pw_source").unwrap();
        let target = server.create_database("pw_target").unwrap();
        source.execute(DDL).unwrap();
        source
            .execute(
                "INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 500) g",
            )
            .unwrap();
        target.execute(DDL).unwrap();
        Setup {
            source,
            target,
            role,
            slot: unique_name("pw"),
            dir: tempfile::tempdir().unwrap(),
            server,
        }
    }

    /// Keyword/value connection string without a password.
    fn conninfo(&self, db: &TestDb) -> String {
        format!(
            "host=127.0.0.1 port={} user={} dbname={}",
            self.server.port(),
            self.role,
            db.name()
        )
    }

    /// A config file with the given connection strings.
    fn config(&self, source: &str, target: &str, name: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "source = {}\ntarget = {}\ntables = [\"public.accounts\"]\nslot = \"{slot}\"\n\
                 publication = \"{slot}\"\nprogress = \"never\"\nspill_dir = {}\n",
                toml_string(source),
                toml_string(target),
                toml_string(&self.dir.path().join("spill").display().to_string()),
                slot = self.slot
            ),
        )
        .unwrap();
        path.display().to_string()
    }
}

/// Asserts that no output of `run` contains a password.
fn assert_no_password(what: &str, stdout: &str, stderr: &str) {
    for secret in [PASSWORD, WRONG] {
        for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
            assert!(
                !text.contains(secret),
                "{what}: {name} contains a password:\n{text}"
            );
        }
    }
}

fn checked(what: &str, run: Finished) -> Finished {
    assert_no_password(what, &run.stdout, &run.stderr);
    run
}

/// `GET /metrics` from the address pgwarp logged.
fn fetch_metrics(running: &mut Running) -> String {
    let mut addr = None;
    wait_for(
        "the metrics endpoint",
        running,
        Duration::from_secs(120),
        |running| {
            addr = running
                .stderr()
                .lines()
                .find(|l| l.contains("serving metrics"))
                .and_then(|l| l.split("addr=").nth(1))
                .map(|a| a.trim().trim_matches('"').to_owned());
            addr.is_some()
        },
    );
    let addr = addr.unwrap();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.contains("pgwarp_phase"), "{page}");
    page
}

#[test]
fn password_in_connection_strings_appears_in_no_output() {
    let s = Setup::new();
    let source = format!("{} password={PASSWORD}", s.conninfo(&s.source));
    let target = format!(
        "postgresql://{}:{PASSWORD}@127.0.0.1:{}/{}?application_name=pgwarp",
        s.role,
        s.server.port(),
        s.target.name()
    );
    let config = s.config(&source, &target, "inline.toml");

    let mut sync = Pgwarp::new(&["sync", "-c", &config, "--metrics-addr", "127.0.0.1:0"])
        .env("PGWARP_LOG", "trace")
        .spawn_in(s.dir.path());
    let metrics = fetch_metrics(&mut sync);
    assert_no_password("metrics", &metrics, "");
    wait_for("the snapshot", &mut sync, Duration::from_secs(300), |_| {
        s.target
            .query_scalar::<i64>("SELECT count(*) FROM accounts")
            .ok()
            == Some(500)
    });
    s.source
        .execute("UPDATE accounts SET balance = balance + 1 WHERE id % 3 = 0")
        .unwrap();
    let metrics = fetch_metrics(&mut sync);
    assert_no_password("metrics while streaming", &metrics, "");

    for args in [
        vec!["status", "-c", &config],
        vec!["status", "-c", &config, "--json"],
        vec!["check", "-c", &config, "--json"],
        vec!["verify", "-c", &config, "--json"],
        vec!["--log-format", "json", "check", "-c", &config],
    ] {
        let run = checked(
            &args.join(" "),
            Pgwarp::new(&args).env("PGWARP_LOG", "trace").run(),
        );
        // status, check and verify connected with the password (SCRAM over TCP)
        assert!(
            !run.stderr.contains("password authentication failed"),
            "{}",
            run.stderr
        );
    }

    let stopped = sync.interrupt();
    let stopped = checked("sync", stopped);
    stopped.expect_success();
    assert!(
        stopped.stderr.contains("TRACE") || stopped.stderr.contains("DEBUG"),
        "the sync ran with trace logs"
    );
}

#[test]
fn password_from_pgpassword_appears_in_no_output() {
    let s = Setup::new();
    let config = s.config(&s.conninfo(&s.source), &s.conninfo(&s.target), "env.toml");
    for args in [
        vec!["check", "-c", &config],
        vec!["sync", "-c", &config, "--until-caught-up"],
        vec!["verify", "-c", &config],
    ] {
        let run = checked(
            &args.join(" "),
            Pgwarp::new(&args)
                .env("PGWARP_LOG", "trace")
                .env("PGPASSWORD", PASSWORD)
                .run(),
        );
        run.expect_success();
    }
    assert_eq!(
        s.target
            .query_scalar::<i64>("SELECT count(*) FROM accounts")
            .unwrap(),
        500
    );
}

#[test]
fn password_from_the_password_file_appears_in_no_output() {
    let s = Setup::new();
    let passfile = s.dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!("127.0.0.1:{}:*:{}:{PASSWORD}\n", s.server.port(), s.role),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = s.config(&s.conninfo(&s.source), &s.conninfo(&s.target), "file.toml");
    for args in [
        vec!["check", "-c", &config],
        vec!["sync", "-c", &config, "--until-caught-up"],
        vec!["status", "-c", &config, "--json"],
    ] {
        let run = checked(
            &args.join(" "),
            Pgwarp::new(&args)
                .env("PGWARP_LOG", "trace")
                .env("PGPASSFILE", passfile.to_str().unwrap())
                .run(),
        );
        run.expect_success();
    }
}

#[test]
fn failures_never_print_the_password() {
    let s = Setup::new();
    let port = s.server.port();
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let good_target = format!("{} password={PASSWORD}", s.conninfo(&s.target));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong password",
            format!("{} password={WRONG}", s.conninfo(&s.source)),
            "password authentication failed",
        ),
        (
            "unreachable server",
            format!(
                "host=127.0.0.1 port={dead_port} user={} dbname=x password={PASSWORD} connect_timeout=5",
                s.role
            ),
            "127.0.0.1",
        ),
        (
            "unknown keyword",
            format!(
                "{} password={PASSWORD} passwrd={PASSWORD}",
                s.conninfo(&s.source)
            ),
            "passwrd",
        ),
        (
            "unterminated quote",
            format!("{} password='{PASSWORD}", s.conninfo(&s.source)),
            "unterminated",
        ),
        (
            "bad port in a URI",
            format!("postgres://{}:{PASSWORD}@127.0.0.1:{port}x/db", s.role),
            "port",
        ),
        (
            "bad host in a URI",
            format!("postgres://{}:{PASSWORD}@[::1/db", s.role),
            "source",
        ),
        (
            "bad percent-encoding in a URI",
            format!("postgres://{}:{PASSWORD}%zz@127.0.0.1:{port}/db", s.role),
            "source",
        ),
        (
            "verify-full without a root certificate",
            format!(
                "{} password={PASSWORD} sslmode=verify-full",
                s.conninfo(&s.source)
            ),
            "root certificate",
        ),
    ];
    for (what, source, expected) in cases {
        let config = s.config(&source, &good_target, "bad.toml");
        for command in ["check", "sync"] {
            let run = Pgwarp::new(&[command, "-c", &config])
                .env("PGWARP_LOG", "trace")
                .run();
            let all = format!("{}\n{}", run.stdout, run.stderr);
            assert_no_password(&format!("{command}, {what}"), &run.stdout, &run.stderr);
            assert!(!run.status.success(), "{command}, {what}: succeeded\n{all}");
            assert!(
                all.contains(expected),
                "{command}, {what}: the output does not say {expected:?}\n{all}"
            );
        }
    }
}
