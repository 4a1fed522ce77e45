//! What connection resolution reads from the process: `PG*` variables, the OS user, the home
//! directory, and whether default files exist.
//!
//! It is a trait so that resolution is a pure function of its inputs in tests: the real
//! environment of a test process (a developer's `PGHOST`, `~/.pgpass`) must not leak into what
//! a test asserts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The process environment as seen by connection resolution.
pub trait Environment {
    /// An environment variable, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
    /// The operating-system user name (libpq's default user).
    fn os_user(&self) -> Option<String>;
    /// The home directory (`$HOME`), where `.pgpass` and `.postgresql/root.crt` live.
    fn home_dir(&self) -> Option<PathBuf> {
        self.var("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    }
    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether `path` is an existing regular file.
    fn is_file(&self, path: &Path) -> bool;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnv;

impl Environment for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn os_user(&self) -> Option<String> {
        whoami::username().ok().or_else(|| self.var("USER"))
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// A fixed environment: variables from a map, a given OS user, and real file checks only under
/// the listed directories (everything else does not exist).
#[derive(Debug, Clone, Default)]
pub struct FixedEnv {
    /// Environment variables.
    pub vars: HashMap<String, String>,
    /// The OS user.
    pub user: Option<String>,
    /// Directories considered to exist (besides real paths under `real_root`).
    pub dirs: Vec<PathBuf>,
    /// Paths under this root are checked on the real filesystem.
    pub real_root: Option<PathBuf>,
}

impl FixedEnv {
    /// An environment with only an OS user.
    pub fn with_user(user: &str) -> Self {
        FixedEnv {
            user: Some(user.to_owned()),
            ..FixedEnv::default()
        }
    }

    /// Adds a variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    fn real(&self, path: &Path) -> bool {
        self.real_root
            .as_deref()
            .is_some_and(|root| path.starts_with(root))
    }
}

impl Environment for FixedEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn os_user(&self) -> Option<String> {
        self.user.clone()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| d == path) || (self.real(path) && path.is_dir())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.real(path) && path.is_file()
    }
}
