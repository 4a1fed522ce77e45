//! Tests of the harness's PostgreSQL servers: they start, answer, isolate databases, survive
//! restarts with their data, honour settings and authentication, and never outlive the test
//! process (panic, or SIGKILL of the whole test process).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgwarp_tests::{PasswordEncryption, PgServer, ServerOptions, StopMode};

#[test]
fn shared_server_is_postgres_15_with_logical_wal() {
    let server = PgServer::shared();
    let version: String = server
        .query_scalar("postgres", "SHOW server_version_num")
        .unwrap();
    assert!(version.starts_with("15"), "server_version_num {version}");
    let wal_level: String = server.query_scalar("postgres", "SHOW wal_level").unwrap();
    assert_eq!(wal_level, "logical");
    let settings = server
        .query_rows(
            "postgres",
            "SELECT name, setting FROM pg_settings WHERE name IN \
             ('fsync','max_replication_slots','max_wal_senders','max_prepared_transactions',\
              'listen_addresses','synchronous_commit','full_page_writes') ORDER BY name",
        )
        .unwrap();
    let got: Vec<(String, String)> = settings
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    let want = [
        ("fsync", "off"),
        ("full_page_writes", "off"),
        ("listen_addresses", "127.0.0.1"),
        ("max_prepared_transactions", "32"),
        ("max_replication_slots", "32"),
        ("max_wal_senders", "32"),
        ("synchronous_commit", "off"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(server.host(), "127.0.0.1");
    assert_eq!(
        server.conn_string("x"),
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=x",
            server.port()
        )
    );
}

#[test]
fn test_databases_are_isolated_and_dropped() {
    let server = PgServer::shared();
    let a = server.create_database("iso").unwrap();
    let b = server.create_database("iso").unwrap();
    assert_ne!(a.name(), b.name());
    a.execute("CREATE TABLE only_in_a (id int); INSERT INTO only_in_a VALUES (1), (2)")
        .unwrap();
    assert_eq!(
        a.query_scalar::<i64>("SELECT count(*) FROM only_in_a")
            .unwrap(),
        2
    );
    let in_b: Option<String> = b
        .query_scalar("SELECT to_regclass('only_in_a')::text")
        .unwrap();
    assert_eq!(in_b, None);

    let name = a.name().to_owned();
    let exists = |n: &str| -> i64 {
        server
            .query_scalar(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{n}'"),
            )
            .unwrap()
    };
    assert_eq!(exists(&name), 1);
    drop(a);
    assert_eq!(exists(&name), 0);
}

#[test]
fn psql_runs_scripts_statement_by_statement() {
    let db = PgServer::shared().create_database("psql").unwrap();
    let out = db
        .psql("CREATE TABLE t (id int, v text);\nINSERT INTO t VALUES (1, 'a'), (2, NULL);\nSELECT id, v FROM t ORDER BY id;\n")
        .unwrap();
    assert_eq!(out, "1|a\n2|\n");
    let err = db.psql("SELECT 1/0;").unwrap_err().to_string();
    assert!(err.contains("division by zero"), "{err}");
}

#[tokio::test]
async fn async_connect_spawns_the_connection_on_the_test_runtime() {
    let db = PgServer::shared().create_database("async").unwrap();
    let client = db.connect().await.unwrap();
    let row = client
        .query_one("SELECT current_database(), 40 + 2", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name());
    assert_eq!(row.get::<_, i32>(1), 42);
    // The synchronous helpers also work from inside a runtime.
    assert_eq!(db.query_scalar::<i32>("SELECT 7").unwrap(), 7);
}

#[test]
fn restart_keeps_data_in_every_stop_mode() {
    let server = PgServer::start().unwrap();
    let db = server.create_database("restart").unwrap();
    db.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)")
        .unwrap();
    server.restart(StopMode::Fast).unwrap();
    assert_eq!(
        db.query_scalar::<i64>("SELECT count(*) FROM t").unwrap(),
        1000
    );

    // The harness runs with synchronous_commit = off: a test about crash recovery must make
    // the commits it relies on durable itself.
    db.execute("SET synchronous_commit = on; INSERT INTO t VALUES (1001)")
        .unwrap();
    let pid_before = server.postmaster_pid().unwrap();
    server.stop(StopMode::Immediate).unwrap();
    assert!(!server.is_running());
    assert_eq!(server.postmaster_pid(), None);
    server.start_again().unwrap();
    assert_ne!(server.postmaster_pid().unwrap(), pid_before);
    assert_eq!(
        db.query_scalar::<i64>("SELECT count(*) FROM t").unwrap(),
        1001
    );
}

#[test]
fn settings_files_and_authentication() {
    let server = PgServer::start_with(
        ServerOptions::default()
            .setting("wal_sender_timeout", "2s")
            .hba(
                "host all md5_user 127.0.0.1/32 md5\n\
                 host all all 127.0.0.1/32 scram-sha-256\n",
            )
            .file("secret/key.pem", b"not really a key".to_vec()),
    )
    .unwrap();
    assert_eq!(
        server
            .query_scalar::<String>("postgres", "SHOW wal_sender_timeout")
            .unwrap(),
        "2s"
    );

    let key = server.data_dir().join("secret/key.pem");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let data_owner = std::fs::metadata(server.data_dir()).unwrap().uid();
    assert_eq!(meta.uid(), data_owner);
    assert_eq!(std::fs::read(&key).unwrap(), b"not really a key");

    server.set_setting("work_mem", "7MB").unwrap();
    server.reload().unwrap();
    assert_eq!(
        server
            .query_scalar::<String>("postgres", "SHOW work_mem")
            .unwrap(),
        "7MB"
    );

    server
        .create_role("scram_user", "s3cret", PasswordEncryption::ScramSha256, "")
        .unwrap();
    server
        .create_role("md5_user", "m5", PasswordEncryption::Md5, "")
        .unwrap();
    let stored = server
        .query_rows(
            "postgres",
            "SELECT rolname, rolpassword = 'md5' || md5('m5' || 'md5_user'), \
                    rolpassword LIKE 'SCRAM-SHA-256$4096:%' \
             FROM pg_authid WHERE rolname LIKE '%\\_user' ORDER BY rolname",
        )
        .unwrap();
    let t = |s: &str| Some(s.to_owned());
    assert_eq!(
        stored,
        vec![
            vec![t("md5_user"), t("t"), t("f")],
            vec![t("scram_user"), t("f"), t("t")]
        ]
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = server.conn_string("postgres");
    let try_login = |user: &str, password: &str| {
        let conn = format!("{base} user={user} password={password}");
        rt.block_on(async move {
            match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    let user: String = client
                        .query_one("SELECT current_user::text", &[])
                        .await
                        .unwrap()
                        .get(0);
                    Ok(user)
                }
                Err(e) => Err(e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_default()),
            }
        })
    };
    assert_eq!(try_login("scram_user", "s3cret").unwrap(), "scram_user");
    assert_eq!(try_login("md5_user", "m5").unwrap(), "md5_user");
    let denied = try_login("scram_user", "wrong").unwrap_err();
    assert!(
        denied.contains("password authentication failed"),
        "{denied}"
    );
    // postgres has no password: TCP is closed to it, the harness's socket stays open.
    assert!(try_login("postgres", "x").is_err());
    assert_eq!(
        server.query_scalar::<i32>("postgres", "SELECT 1").unwrap(),
        1
    );
}

// ---- cleanup when the test process dies -------------------------------------------------

const CHILD_MODE: &str = "PGWARP_HARNESS_CHILD_MODE";
const CHILD_OUT: &str = "PGWARP_HARNESS_CHILD_OUT";

/// Not a test of its own: the body runs only when a parent test re-executes this binary.
#[test]
fn child_process_helper() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let out = PathBuf::from(std::env::var(CHILD_OUT).unwrap());
    let dedicated;
    let server = match mode.as_str() {
        "panic" => {
            dedicated = PgServer::start().unwrap();
            &dedicated
        }
        _ => PgServer::shared(),
    };
    let info = format!(
        "{}\n{}\n{}\n",
        server.root_dir().display(),
        server.postmaster_pid().unwrap(),
        server.port()
    );
    std::fs::write(out.with_extension("tmp"), info).unwrap();
    std::fs::rename(out.with_extension("tmp"), &out).unwrap();
    match mode.as_str() {
        "panic" => panic!("deliberate panic with a running server"),
        _ => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

struct ChildInfo {
    root: PathBuf,
    postmaster: u32,
    port: u16,
}

fn spawn_child(mode: &str, out: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_OUT, out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn read_info(out: &Path) -> ChildInfo {
    let text = std::fs::read_to_string(out).unwrap();
    let mut lines = text.lines();
    ChildInfo {
        root: PathBuf::from(lines.next().unwrap()),
        postmaster: lines.next().unwrap().parse().unwrap(),
        port: lines.next().unwrap().parse().unwrap(),
    }
}

fn is_postgres_process(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("postgres"))
        .unwrap_or(false)
}

fn accepts_tcp(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits for something that happens asynchronously (the watchdog's cleanup); the deadline only
/// turns a hang into a failure.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn panicking_test_stops_its_server_and_removes_its_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("info");
    let status = spawn_child("panic", &out).wait().unwrap();
    assert!(!status.success(), "the child test should have failed");
    let info = read_info(&out);
    // Drop ran during unwinding, before the child exited: nothing to wait for.
    assert!(!info.root.exists(), "{} still exists", info.root.display());
    assert!(!is_postgres_process(info.postmaster));
    assert!(!accepts_tcp(info.port));
}

#[test]
fn killed_test_process_leaves_no_server_behind() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("info");
    let mut child = spawn_child("shared", &out);
    wait_until("the child to start its shared server", || out.exists());
    let info = read_info(&out);
    assert!(info.root.exists());
    assert!(is_postgres_process(info.postmaster));
    assert!(accepts_tcp(info.port));

    child.kill().unwrap(); // SIGKILL: no destructor, no atexit, nothing runs in the child
    child.wait().unwrap();
    wait_until("the watchdog to stop the server", || {
        !is_postgres_process(info.postmaster)
    });
    wait_until("the watchdog to remove the directory", || {
        !info.root.exists()
    });
    assert!(!accepts_tcp(info.port));
}
