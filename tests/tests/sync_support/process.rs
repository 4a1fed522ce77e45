//! Running `pgwarp` in a child process, to kill it for real (`kill -9`, SIGINT).
//!
//! The child is this very test executable, started with `--ignored --exact child_entry`: the
//! `child_entry` test of the test crate (see [`child_main`]) turns the arguments in
//! `PGWARP_CHILD_ARGS` into a call of `pgwarp::cli::main_from`, which is all the `pgwarp`
//! binary's `main` does. So the process that gets killed runs the binary's code, yet needs no
//! `cargo build` of the binary and cannot be a stale build of it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const ARGS_ENV: &str = "PGWARP_CHILD_ARGS";
const SEPARATOR: char = '\u{1f}';

/// Call from a `#[test] #[ignore] fn child_entry()` in every test crate that spawns children.
pub fn child_main() {
    let Ok(args) = std::env::var(ARGS_ENV) else {
        return;
    };
    let argv: Vec<String> = std::iter::once("pgwarp".to_owned())
        .chain(args.split(SEPARATOR).map(str::to_owned))
        .collect();
    let code = pgwarp::cli::main_from(argv);
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// A running `pgwarp` child.
pub struct PgwarpProcess {
    child: Child,
    log: PathBuf,
}

impl PgwarpProcess {
    /// Starts `pgwarp <args>`, output to `log`.
    pub fn spawn(args: &[String], log: &Path) -> PgwarpProcess {
        let exe = std::env::current_exe().expect("the test executable");
        let out = std::fs::File::create(log).expect("create the child's log");
        let err = out.try_clone().expect("clone the log file");
        let child = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ARGS_ENV, args.join(&SEPARATOR.to_string()))
            .env(
                "PGWARP_LOG",
                std::env::var("PGWARP_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start the child");
        PgwarpProcess {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill_9(mut self) -> String {
        self.child.kill().expect("SIGKILL the child");
        let _ = self.child.wait();
        self.log()
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
    }

    /// Waits for the exit (a hang guard of ten minutes, not a timing assertion).
    pub async fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Some(status) = self.exited() {
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "pgwarp did not exit; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PgwarpProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `condition` until it holds (a hang guard of ten minutes, not a timing assertion);
/// `process` is checked on each round so a crashed child fails fast with its log.
pub async fn wait_until(
    what: &str,
    process: &mut PgwarpProcess,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if condition() {
            return;
        }
        if let Some(status) = process.exited() {
            panic!(
                "pgwarp exited ({status}) before {what}; log:\n{}",
                process.log()
            );
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
