//! Running `pgwarp` as a separate process, to see exactly what an operator sees: the exit
//! status, stdout, and stderr with the logs, and to stop, kill or signal it for real.
//!
//! How the child is started is [`pgwarp_tests::child`]'s: the `child_entry` test of the
//! calling test file must call [`child_main`]. A marker line on stdout separates the test
//! harness's own banner from what `pgwarp` printed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const STDOUT_MARKER: &str = "\u{1e}pgwarp-stdout-begins\u{1e}";

/// Call from `#[test] #[ignore] fn child_entry()` in every test file that runs `pgwarp`.
pub fn child_main() {
    let Some(argv) = pgwarp_tests::child::argv() else {
        return;
    };
    println!("{STDOUT_MARKER}");
    let code = pgwarp::cli::main_from(argv);
    std::process::exit(exit_status(code));
}

/// The number inside an `ExitCode` (which has no getter): its `Debug` form shows it, e.g.
/// `ExitCode(unix_exit_status(2))`; 1 if it cannot be read.
fn exit_status(code: std::process::ExitCode) -> i32 {
    if code == std::process::ExitCode::SUCCESS {
        return 0;
    }
    let debug = format!("{code:?}");
    let digits: String = debug
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|n| *n != 0).unwrap_or(1)
}

/// How to start `pgwarp`.
#[derive(Debug, Clone, Default)]
pub struct Pgwarp {
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
}

impl Pgwarp {
    /// `pgwarp <args>` with `PGWARP_LOG=info` and no `PG*` variables of the test environment.
    pub fn new<S: AsRef<str>>(args: &[S]) -> Pgwarp {
        Pgwarp {
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            env: vec![("PGWARP_LOG".into(), "info".into())],
            env_remove: [
                "PGPASSWORD",
                "PGPASSFILE",
                "PGHOST",
                "PGPORT",
                "PGUSER",
                "PGDATABASE",
                "PGSSLMODE",
                "PGSSLROOTCERT",
                "PGWARP_SOURCE",
                "PGWARP_TARGET",
                "PGWARP_CONFIG",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        }
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, name: &str, value: &str) -> Pgwarp {
        self.env_remove.retain(|n| n != name);
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = pgwarp_tests::child::command(&self.args).unwrap_or_else(|e| panic!("{e}"));
        for name in &self.env_remove {
            cmd.env_remove(name);
        }
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Runs it to the end (a hang guard of ten minutes, not a timing assertion).
    pub fn run(&self) -> Finished {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut running = self.spawn_in(dir.path());
        let status = running.wait_for_exit(Duration::from_secs(600));
        running.finished(status)
    }

    /// Starts it; output goes to files in `dir`.
    pub fn spawn_in(&self, dir: &Path) -> Running {
        let stdout = dir.join(format!("stdout-{}", pgwarp_tests::unique_name("p")));
        let stderr = dir.join(format!("stderr-{}", pgwarp_tests::unique_name("p")));
        let child = self
            .command()
            .stdout(Stdio::from(
                std::fs::File::create(&stdout).expect("create the stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("create the stderr file"),
            ))
            .spawn()
            .expect("start pgwarp");
        Running {
            child,
            stdout,
            stderr,
        }
    }
}

/// A running `pgwarp`.
pub struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    /// What it printed on stdout so far (after the test harness's banner).
    pub fn stdout(&self) -> String {
        let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        match text.split_once(STDOUT_MARKER) {
            Some((_, rest)) => rest.strip_prefix('\n').unwrap_or(rest).to_owned(),
            None => String::new(),
        }
    }

    /// What it printed on stderr so far (logs and the final error).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends a signal (`INT`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the exit; panics with the output after `limit` (a hang guard).
    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "pgwarp did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it with SIGINT (as Ctrl-C) and waits for the exit.
    pub fn interrupt(mut self) -> Finished {
        self.signal("INT");
        let status = self.wait_for_exit(Duration::from_secs(600));
        self.finished(status)
    }

    fn finished(&self, status: ExitStatus) -> Finished {
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A finished `pgwarp`.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Finished {
    /// Asserts a non-zero exit and returns stderr.
    pub fn expect_failure(&self) -> &str {
        assert!(
            !self.status.success(),
            "pgwarp succeeded where it should fail\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        &self.stderr
    }

    /// Asserts success.
    pub fn expect_success(&self) {
        assert!(
            self.status.success(),
            "pgwarp failed ({})\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// The error `main` printed: stderr from the last line starting with `pgwarp: ` on (it
    /// may span lines), or "" if there is none.
    pub fn error_text(&self) -> &str {
        let start = if self.stderr.starts_with("pgwarp: ") {
            Some(0)
        } else {
            self.stderr.rfind("\npgwarp: ").map(|i| i + 1)
        };
        start.map_or("", |i| &self.stderr[i..])
    }
}
