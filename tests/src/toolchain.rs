//! Where the PostgreSQL 15 binaries are, and which OS user runs them.
//!
//! PostgreSQL refuses to run as root, and the harness usually runs as root (CI containers), so
//! every server-side program (`initdb`, `pg_ctl`, the watchdog) is spawned with the uid and gid
//! of the `postgres` OS user. Rust's `CommandExt::uid` also drops root's supplementary groups
//! before `exec`, so no `runuser`/`sudo` wrapper (and no PAM session) is involved. Client
//! programs (`psql`) run as the current user.
//!
//! Binary lookup order: `$PGWARP_TEST_PG_BINDIR`; `pg_config --bindir` when that directory holds
//! `initdb`, `pg_ctl` and `postgres`; else the highest `/usr/lib/postgresql/<major>/bin`. (On the
//! reference machine `/usr/local/bin/initdb` is only a symlink into `/usr/lib/postgresql/15/bin`,
//! which `pg_config --bindir` reports directly.)

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::error::{HarnessError, Result};

/// An OS account that server processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// Login name, e.g. `postgres`.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
}

/// The PostgreSQL binaries and the identity to run them with.
#[derive(Debug, Clone)]
pub struct Toolchain {
    bin_dir: PathBuf,
    run_as: Option<OsUser>,
}

static TOOLCHAIN: OnceLock<std::result::Result<Toolchain, String>> = OnceLock::new();

impl Toolchain {
    /// The process-wide toolchain, located on first use.
    pub fn get() -> Result<&'static Toolchain> {
        TOOLCHAIN
            .get_or_init(|| Toolchain::locate().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HarnessError::Environment(e.clone()))
    }

    fn locate() -> Result<Toolchain> {
        let bin_dir = find_bin_dir()?;
        let run_as = if running_as_root()? {
            Some(lookup_user("postgres")?)
        } else {
            None
        };
        Ok(Toolchain { bin_dir, run_as })
    }

    /// Directory holding `initdb`, `pg_ctl`, `postgres`, `psql`, `pg_recvlogical`, ...
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The user server processes run as, when the harness runs as root.
    pub fn run_as(&self) -> Option<&OsUser> {
        self.run_as.as_ref()
    }

    /// Full path of one of the PostgreSQL programs.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A command for a server-side program, running as the server's OS user, from `/`.
    pub fn server_command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.program(name));
        cmd.current_dir("/");
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid);
            cmd.env("HOME", "/tmp")
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        cmd
    }

    /// Makes `path` owned by the server's OS user (a no-op when not running as root).
    pub fn hand_over(&self, path: &Path) -> Result<()> {
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .map_err(|e| HarnessError::io(format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }
}

/// Runs `cmd` to completion, capturing its output, and fails unless it exits with status 0.
pub(crate) fn run(cmd: &mut Command, action: &str) -> Result<Output> {
    let program = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("run {program} to {action}"), e))?;
    if out.status.success() {
        return Ok(out);
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        text.push('\n');
        text.push_str(stdout.trim());
    }
    Err(HarnessError::Command {
        program,
        action: action.to_owned(),
        status: out.status,
        output: text,
    })
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PGWARP_TEST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        return Err(HarnessError::Environment(format!(
            "PGWARP_TEST_PG_BINDIR={} has no initdb, pg_ctl and postgres",
            dir.display()
        )));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok();
            let dir = entry.path().join("bin");
            if let Some(major) = major
                && has_server_binaries(&dir)
                && best.as_ref().is_none_or(|(m, _)| major > *m)
            {
                best = Some((major, dir));
            }
        }
    }
    best.map(|(_, dir)| dir).ok_or_else(|| {
        HarnessError::Environment(
            "no PostgreSQL server binaries found (tried $PGWARP_TEST_PG_BINDIR, \
             pg_config --bindir, /usr/lib/postgresql/*/bin); install postgresql-15"
                .to_owned(),
        )
    })
}

fn running_as_root() -> Result<bool> {
    // /proc/self resolves to /proc/<pid>, which is owned by the effective uid.
    if let Ok(meta) = std::fs::metadata("/proc/self") {
        return Ok(meta.uid() == 0);
    }
    let out = run(Command::new("id").arg("-u"), "find the effective user id")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn lookup_user(name: &str) -> Result<OsUser> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| HarnessError::io("read /etc/passwd", e))?;
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [n, _, uid, gid, ..] if *n == name => Some(OsUser {
                    name: name.to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                }),
                _ => None,
            }
        })
        .next()
        .ok_or_else(|| {
            HarnessError::Environment(format!(
                "running as root but there is no \"{name}\" OS user to run PostgreSQL as"
            ))
        })
}
