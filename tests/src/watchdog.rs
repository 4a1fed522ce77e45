//! A tiny guardian process per server that stops the server and removes its directory once
//! the test process is gone, however it went.
//!
//! `Drop` does not run for statics (`PgServer::shared()`), on `std::process::exit`, on
//! `panic = abort`, or when the test runner kills a test with SIGKILL; and `pg_ctl start`
//! puts the postmaster in its own session, so it would outlive the test. The watchdog is
//! `/bin/sh` running as the server's OS user, in its own process group (so signals sent to the
//! test's group do not reach it, and it ignores HUP/INT/TERM/QUIT anyway). Its stdin is the
//! read end of a pipe whose only write end lives in the test process (Rust opens every file
//! descriptor with `O_CLOEXEC`, so no other child inherits it). When the test process exits for
//! any reason the kernel closes that write end, `read` returns, and the watchdog runs
//! `pg_ctl stop -m immediate` and `rm -rf` on the server's directory. Its stdout and stderr are
//! `/dev/null`, so it never holds the test runner's output pipes open.
//!
//! On an orderly `Drop` the harness stops the server and removes the directory itself, then
//! kills and reaps the watchdog.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use std::os::unix::process::CommandExt;

use crate::error::{HarnessError, Result};
use crate::toolchain::Toolchain;

const SCRIPT: &str = r#"trap '' HUP INT TERM QUIT PIPE
read -r _ignored || :
"$1" -D "$2" -m immediate -w -t 60 stop >/dev/null 2>&1 || :
if [ "$4" != keep ]; then rm -rf "$3"; fi
"#;

/// The running watchdog of one server.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    /// Held only to keep the pipe open; closing it triggers the cleanup.
    _lifeline: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog for the server in `data_dir`, whose whole directory is `root_dir`.
    pub(crate) fn spawn(
        toolchain: &Toolchain,
        data_dir: &Path,
        root_dir: &Path,
        keep_files: bool,
    ) -> Result<Watchdog> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("pgwarp-watchdog")
            .arg(toolchain.program("pg_ctl"))
            .arg(data_dir)
            .arg(root_dir)
            .arg(if keep_files { "keep" } else { "remove" })
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(user) = toolchain.run_as() {
            cmd.uid(user.uid).gid(user.gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| HarnessError::io("start the server watchdog", e))?;
        let lifeline = child.stdin.take();
        Ok(Watchdog {
            child,
            _lifeline: lifeline,
        })
    }

    /// Ends the watchdog without letting it act (the caller has cleaned up already).
    pub(crate) fn disarm(mut self) {
        // Our own child, by its pid; it is blocked in `read`, so nothing is interrupted.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
