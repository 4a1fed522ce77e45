//! How a test server is configured: settings, `pg_hba.conf`, extra files, stop modes.

/// Settings every harness server gets before the caller's own (later lines win in
/// `postgresql.conf`, so callers can override any of them).
pub const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("wal_level", "logical"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_replication_slots", "32"),
    ("max_wal_senders", "32"),
    ("max_prepared_transactions", "32"),
    ("max_connections", "200"),
    ("shared_buffers", "64MB"),
    ("logging_collector", "off"),
    ("log_line_prefix", "%m [%p] %q%u@%d "),
    ("log_min_messages", "warning"),
];

/// The default `pg_hba.conf`: trust for everyone over the unix socket and 127.0.0.1, including
/// replication connections.
pub const DEFAULT_HBA: &str = "\
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  trust
host    replication  all   127.0.0.1/32  trust
";

/// Always put first in a custom `pg_hba.conf`, so the harness's own administrative
/// connections (user `postgres` over the unix socket in the server's private directory) keep
/// working whatever a test does to authentication over TCP.
pub const HARNESS_HBA_LINE: &str = "local   all   postgres   trust\n";

/// Options for [`crate::PgServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) hba: Option<String>,
    pub(crate) files: Vec<(String, Vec<u8>)>,
    pub(crate) initdb_args: Vec<String>,
}

impl ServerOptions {
    /// Adds `name = 'value'` to `postgresql.conf` (after the [`DEFAULT_SETTINGS`]).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces `pg_hba.conf` with `text`, preceded by [`HARNESS_HBA_LINE`].
    pub fn hba(mut self, text: &str) -> Self {
        self.hba = Some(text.to_owned());
        self
    }

    /// Writes a file (relative to the data directory) before the first start, owned by the
    /// server's OS user with mode 0600, as PostgreSQL requires for `ssl_key_file`.
    pub fn file(mut self, relative_path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((relative_path.to_owned(), contents.into()));
        self
    }

    /// Passes an extra argument to `initdb` (e.g. `--data-checksums`).
    pub fn initdb_arg(mut self, arg: &str) -> Self {
        self.initdb_args.push(arg.to_owned());
        self
    }
}

/// `pg_ctl stop -m <mode>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for every client to disconnect.
    Smart,
    /// Disconnects clients, checkpoints, exits cleanly.
    Fast,
    /// Kills every process without a checkpoint: the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    /// The `-m` argument of `pg_ctl`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// How a role's password is stored (`password_encryption` at `CREATE ROLE` time), which decides
/// the authentication exchange a client will see under `md5` or `scram-sha-256` in `pg_hba.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncryption {
    /// An `md5...` hash: works with `md5` hba lines only.
    Md5,
    /// A SCRAM-SHA-256 verifier: works with both `md5` and `scram-sha-256` hba lines.
    ScramSha256,
}

impl PasswordEncryption {
    /// The value of the `password_encryption` setting.
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordEncryption::Md5 => "md5",
            PasswordEncryption::ScramSha256 => "scram-sha-256",
        }
    }
}

/// Quotes a value for `postgresql.conf` or a SQL literal (`'` doubled, `\` doubled).
pub(crate) fn quote_literal(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "''");
    if value.contains('\\') {
        format!("E'{escaped}'")
    } else {
        format!("'{escaped}'")
    }
}

/// Quotes a value for a `postgresql.conf` line (no `E` prefix there).
pub(crate) fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Quotes an SQL identifier (always, doubling `"`).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
