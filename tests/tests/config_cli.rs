//! Invalid configuration through the real command line: `pgwarp <command> -c file.toml`, flags
//! and `PGWARP_*` variables. Each run is a separate `pgwarp` process; it must exit non-zero
//! with one `pgwarp: ...` line naming the offending key, and must not have opened a single
//! connection: source and target point at a listener of this test that counts connections.

mod fault_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use fault_support::process::{Finished, Pgwarp, child_main};

#[test]
#[ignore = "entry point of the pgwarp child processes, not a test"]
fn child_entry() {
    child_main();
}

/// A TCP listener standing in for both servers: anything that connects is counted.
struct Tripwire {
    listener: TcpListener,
}

impl Tripwire {
    fn new() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        listener.set_nonblocking(true).expect("non-blocking");
        Tripwire { listener }
    }

    fn conninfo(&self, dbname: &str) -> String {
        let port = self.listener.local_addr().expect("local address").port();
        format!("host=127.0.0.1 port={port} user=migrator dbname={dbname} connect_timeout=5")
    }

    /// Connections that arrived (accepted and closed at once).
    fn connections(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

fn config(dir: &Path, wire: &Tripwire, extra: &str) -> PathBuf {
    let path = dir.join("pgwarp.toml");
    let text = format!(
        "source = \"{}\"\ntarget = \"{}\"\ntables = [\"public.users\"]\nprogress = \"never\"\n{extra}",
        wire.conninfo("shop"),
        wire.conninfo("shop"),
    );
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Runs `pgwarp args` and asserts a failure without any connection, naming every needle.
fn assert_rejected(wire: &Tripwire, run: &Finished, needles: &[&str]) {
    run.expect_failure();
    let all = format!("{}\n{}", run.stdout, run.stderr);
    for needle in needles {
        assert!(
            all.contains(needle),
            "the output does not name {needle:?}\nstdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
    }
    assert_eq!(
        wire.connections(),
        0,
        "pgwarp connected before rejecting its configuration\nstderr:\n{}",
        run.stderr
    );
}

/// The final error says `what` exactly once (a cause is not repeated by its wrapper).
fn assert_said_once(run: &Finished, what: &str) {
    let error = run.error_text();
    assert_eq!(
        error.matches(what).count(),
        1,
        "the error should say {what:?} once:\n{error}"
    );
}

#[test]
fn unknown_key_in_the_file_stops_every_command_before_connecting() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "[limits]\nqueue_bytez = \"16MiB\"\n");
    let path = path.to_str().unwrap();
    for command in ["sync", "check", "status", "verify"] {
        let run = Pgwarp::new(&[command, "-c", path]).run();
        assert_rejected(&wire, &run, &["unknown field `queue_bytez`", path]);
        assert_said_once(&run, "unknown field `queue_bytez`");
    }
}

#[test]
fn config_file_named_by_pgwarp_config_is_read() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "parallel = 0\n");
    let run = Pgwarp::new(&["sync"])
        .env("PGWARP_CONFIG", path.to_str().unwrap())
        .run();
    assert_rejected(&wire, &run, &["parallel"]);
}

#[test]
fn bad_size_in_the_file_is_named() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &wire,
        "[limits]\nchunk_bytes = \"12 parsecs\"\n",
    );
    let run = Pgwarp::new(&["sync", "-c", path.to_str().unwrap()]).run();
    assert_rejected(&wire, &run, &["limits.chunk_bytes", "12 parsecs"]);
}

#[test]
fn zero_size_in_the_file_is_named() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "[limits]\ntransaction_memory = 0\n");
    let run = Pgwarp::new(&["sync", "-c", path.to_str().unwrap()]).run();
    assert_rejected(&wire, &run, &["limits.transaction_memory"]);
}

#[test]
fn negative_number_in_the_file_is_named() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "parallel = -2\n");
    let run = Pgwarp::new(&["sync", "-c", path.to_str().unwrap()]).run();
    assert_rejected(&wire, &run, &["parallel = -2"]);
}

#[test]
fn wrong_type_in_the_file_is_named() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "tables = \"public.users\"\n");
    // the same key twice is a TOML error too; use a file without the base table list
    std::fs::write(
        &path,
        format!(
            "source = \"{}\"\ntarget = \"{}\"\ntables = \"public.users\"\n",
            wire.conninfo("a"),
            wire.conninfo("b")
        ),
    )
    .unwrap();
    let run = Pgwarp::new(&["check", "-c", path.to_str().unwrap()]).run();
    assert_rejected(&wire, &run, &["tables", "invalid type"]);
}

#[test]
fn bad_connection_string_in_the_file_names_source_or_target() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgwarp.toml");
    std::fs::write(
        &path,
        format!(
            "source = \"{} sslmode=maybe\"\ntarget = \"{}\"\ntables = [\"t\"]\n",
            wire.conninfo("a"),
            wire.conninfo("b")
        ),
    )
    .unwrap();
    let run = Pgwarp::new(&["sync", "-c", path.to_str().unwrap()]).run();
    assert_rejected(&wire, &run, &["source", "sslmode", "maybe"]);
    assert_said_once(&run, "\"maybe\"");

    std::fs::write(
        &path,
        format!(
            "source = \"{}\"\ntarget = \"{} port=5432x\"\ntables = [\"t\"]\n",
            wire.conninfo("a"),
            wire.conninfo("b")
        ),
    )
    .unwrap();
    let run = Pgwarp::new(&["sync", "-c", path.to_str().unwrap()]).run();
    assert_rejected(&wire, &run, &["target", "5432x"]);
}

#[test]
fn bad_connection_string_flag_names_source() {
    let wire = Tripwire::new();
    let run = Pgwarp::new(&[
        "sync",
        "--source",
        "host=127.0.0.1 nonsense_option=1",
        "--target",
        &wire.conninfo("b"),
        "--tables",
        "t",
    ])
    .run();
    assert_rejected(&wire, &run, &["source", "nonsense_option"]);
}

#[test]
fn bad_value_from_a_flag_overrides_a_good_file_and_is_named() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "metrics_addr = \"127.0.0.1:0\"\n");
    let run = Pgwarp::new(&[
        "sync",
        "-c",
        path.to_str().unwrap(),
        "--metrics-addr",
        "not-an-address",
    ])
    .run();
    assert_rejected(&wire, &run, &["metrics_addr", "not-an-address"]);
}

#[test]
fn bad_value_from_an_environment_variable_is_named() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "");
    let run = Pgwarp::new(&["sync", "-c", path.to_str().unwrap()])
        .env("PGWARP_SLOT", "Not-A-Slot")
        .run();
    assert_rejected(&wire, &run, &["slot", "Not-A-Slot"]);
}

#[test]
fn negative_flag_value_is_rejected_by_the_parser_naming_the_flag() {
    let wire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &wire, "");
    let run = Pgwarp::new(&["sync", "-c", path.to_str().unwrap(), "--parallel=-3"]).run();
    assert_rejected(&wire, &run, &["--parallel", "-3"]);
}

#[test]
fn missing_target_is_named_with_every_way_to_give_it() {
    let wire = Tripwire::new();
    let run = Pgwarp::new(&["sync", "--source", &wire.conninfo("a"), "--tables", "t"]).run();
    assert_rejected(&wire, &run, &["--target", "PGWARP_TARGET", "config file"]);
}
