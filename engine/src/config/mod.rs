//! Configuration in two stages (STYLE rule 10).
//!
//! ```text
//!  pgwarp.toml ──► RawConfig ─┐
//!  PGWARP_* env ─┐            ├─ overlay ─► RawConfig ─ validate() ─► Settings
//!  --flags ──────┴► RawConfig ┘  (top wins)              (typed, checked, conninfo resolved)
//! ```
//!
//! [`RawConfig`] mirrors the TOML file with serde `deny_unknown_fields`, so a misspelled key
//! is an error rather than a silently ignored setting. The command line (clap, with `env`
//! fallbacks, so a flag beats its `PGWARP_*` variable) produces another `RawConfig` that is laid
//! over the file's. [`RawConfig::validate`] then turns the result into [`Settings`]: connection
//! strings are resolved the way libpq would (including `PG*` variables and `.pgpass`), sizes
//! parsed, names checked, and every default documented on the field that has it.

mod raw;
mod settings;

use std::path::Path;

pub use raw::{RawConfig, RawDuration, RawLimits, RawNode, RawSize};
pub use settings::{
    DEFAULT_NODE_TIMEOUT, DEFAULT_PARALLEL, DEFAULT_PUBLICATION, DEFAULT_SLOT, Limits, LogFormat,
    ProgressMode, Settings, StreamedApply, TableScope, parse_duration, parse_size,
};

use crate::conn::ConnError;
use crate::error::{Classify, ErrorClass};

/// A configuration problem: always definite, the operator must fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    // the causes are part of the messages and deliberately not `source()`s: a report that
    // prints the chain (`{:#}`) would otherwise repeat them
    #[error("could not read configuration file \"{path}\": {error}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid configuration file \"{path}\": {error}")]
    Parse {
        /// The path given.
        path: String,
        /// The parser's message (names the key and line).
        error: toml::de::Error,
    },
    /// A required value is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// A value is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
    /// A connection string is invalid.
    #[error("invalid {which} connection string: {error}")]
    Conn {
        /// `source`, `target` or `node host:port`.
        which: String,
        /// The parser's error.
        error: ConnError,
    },
}

impl Classify for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Definite
    }
}

/// Reads and parses a configuration file.
pub fn load_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: shown.clone(),
        error,
    })?;
    RawConfig::from_toml(&text).map_err(|error| ConfigError::Parse { path: shown, error })
}
