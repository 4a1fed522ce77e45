//! Running `pgwarp` in a child process, to see exactly what an operator sees (exit status,
//! stdout, stderr) and to signal or kill it for real.
//!
//! The child is the test executable itself, started with `--ignored --exact child_entry`: the
//! test file's ignored `child_entry` test reads [`argv`] and hands it to
//! `pgwarp::cli::main_from`, which is all the `pgwarp` binary's `main` does. So the process
//! runs the binary's code, yet needs no `cargo build` of the binary and cannot be a stale build
//! of it. (This crate does not link `pgwarp`, so the call itself stays in the test file.)

use std::process::{Command, Stdio};

use crate::error::{HarnessError, Result};

/// The environment variable carrying the child's arguments.
const ARGS_ENV: &str = "PGWARP_CHILD_ARGS";
/// Separates the arguments in [`ARGS_ENV`] (ASCII unit separator: no argument holds it).
const SEPARATOR: char = '\u{1f}';

/// In a child started by [`command`]: `pgwarp` followed by its arguments. `None` in any other
/// process (the `child_entry` test then returns at once).
pub fn argv() -> Option<Vec<String>> {
    let args = std::env::var(ARGS_ENV).ok()?;
    Some(
        std::iter::once("pgwarp".to_owned())
            .chain(args.split(SEPARATOR).map(str::to_owned))
            .collect(),
    )
}

/// The command that starts this test executable as a child running only its `child_entry`
/// test (output not captured), which runs `pgwarp <args>`; stdin is empty.
pub fn command<S: AsRef<str>>(args: &[S]) -> Result<Command> {
    let exe = std::env::current_exe().map_err(|source| HarnessError::Io {
        action: "find the test executable".into(),
        source,
    })?;
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "child_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ARGS_ENV, args.join(&SEPARATOR.to_string()))
    .stdin(Stdio::null());
    Ok(cmd)
}
