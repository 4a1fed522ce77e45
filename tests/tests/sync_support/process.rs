//! Running `pgwarp` in a child process, to kill it for real (`kill -9`, SIGINT). How the child
//! is started is [`pgwarp_tests::child`]'s; this module adds a combined log and waiting.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The arguments of `pgwarp sync -c <config>`, with `--until-caught-up` when asked.
pub fn sync_args(config: &Path, until_caught_up: bool) -> Vec<String> {
    let mut a = vec![
        "sync".to_owned(),
        "-c".to_owned(),
        config.display().to_string(),
    ];
    if until_caught_up {
        a.push("--until-caught-up".to_owned());
    }
    a
}

/// Call from a `#[test] #[ignore] fn child_entry()` in every test crate that spawns children.
pub fn child_main() {
    let Some(argv) = pgwarp_tests::child::argv() else {
        return;
    };
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
        let out = std::fs::File::create(log).expect("create the child's log");
        let err = out.try_clone().expect("clone the log file");
        let child = pgwarp_tests::child::command(args)
            .unwrap_or_else(|e| panic!("{e}"))
            .env(
                "PGWARP_LOG",
                std::env::var("PGWARP_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
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
