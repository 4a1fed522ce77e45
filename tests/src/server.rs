//! Throwaway PostgreSQL servers: one `initdb` per server in a private temporary directory.
//!
//! Layout of a server's directory (`/tmp/pgwarp-pg-XXXXXX`, mode 0700, owned by the server's
//! OS user): `data/` (PGDATA), `server.log`, and the unix socket `.s.PGSQL.<port>`.
//!
//! Life cycle and cleanup:
//! * [`PgServer::start_with`] creates the directory, starts the [watchdog](crate::watchdog)
//!   first (so even a failure halfway through is cleaned up), runs `initdb`, writes settings,
//!   `pg_hba.conf` and extra files, picks a free port on 127.0.0.1 and runs `pg_ctl start -w`,
//!   which returns once the server accepts connections. A port lost to a race with another
//!   process is retried with a new one.
//! * `Drop` (also while unwinding from a panic) runs `pg_ctl stop -m immediate`, removes the
//!   directory and reaps the watchdog.
//! * When `Drop` cannot run (the process-wide [`PgServer::shared`] server, `process::exit`,
//!   SIGKILL from the test runner) the watchdog notices the test process is gone and does the
//!   same.
//! * `PGWARP_TEST_KEEP=1` keeps the directories (servers are still stopped) for post-mortems;
//!   the path is printed to stderr.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::database::TestDb;
use crate::endpoint::Endpoint;
use crate::error::{HarnessError, Result};
use crate::options::{
    DEFAULT_HBA, DEFAULT_SETTINGS, HARNESS_HBA_LINE, PasswordEncryption, ServerOptions, StopMode,
    quote_conf, quote_ident, quote_literal,
};
use crate::toolchain::{Toolchain, run};
use crate::watchdog::Watchdog;

/// How many times a start is retried when the chosen port was taken meanwhile.
const PORT_ATTEMPTS: usize = 8;
/// `pg_ctl -t`: generous, because CI machines can be slow; never a test assertion.
const PG_CTL_TIMEOUT_SECS: &str = "120";

/// One running (or deliberately stopped) PostgreSQL server owned by the test process.
#[derive(Debug)]
pub struct PgServer {
    toolchain: &'static Toolchain,
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    data_dir: PathBuf,
    endpoint: Endpoint,
    keep_files: bool,
    state: Mutex<ServerState>,
}

#[derive(Debug)]
struct ServerState {
    running: bool,
    watchdog: Option<Watchdog>,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

impl PgServer {
    /// Starts a server with the default options.
    pub fn start() -> Result<PgServer> {
        PgServer::start_with(ServerOptions::default())
    }

    /// The process-wide server, started on first use and shared by every test of the binary.
    /// Each test should make its own database with [`PgServer::create_database`]. It is stopped
    /// and removed by its watchdog when the process exits.
    ///
    /// # Panics
    /// If the server cannot be started (the message says why); use [`PgServer::try_shared`]
    /// to get the error instead.
    pub fn shared() -> &'static PgServer {
        match PgServer::try_shared() {
            Ok(server) => server,
            Err(e) => panic!("cannot start the shared test server: {e}"),
        }
    }

    /// Like [`PgServer::shared`], returning the start-up error.
    pub fn try_shared() -> Result<&'static PgServer> {
        static START: Mutex<()> = Mutex::new(());
        if let Some(server) = SHARED.get() {
            return Ok(server);
        }
        let _guard = START
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(server) = SHARED.get() {
            return Ok(server);
        }
        let server = PgServer::start()?;
        Ok(SHARED.get_or_init(|| server))
    }

    /// Starts a dedicated server with `options`.
    pub fn start_with(options: ServerOptions) -> Result<PgServer> {
        let toolchain = Toolchain::get()?;
        let keep_files = std::env::var_os("PGWARP_TEST_KEEP").is_some_and(|v| v != "0");
        let base = std::env::var_os("PGWARP_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let root = tempfile::Builder::new()
            .prefix("pgwarp-pg-")
            .tempdir_in(&base)
            .map_err(|e| {
                HarnessError::io(format!("create a directory in {}", base.display()), e)
            })?;
        let root_path = root.path().to_path_buf();
        fs::set_permissions(&root_path, fs::Permissions::from_mode(0o700))
            .map_err(|e| HarnessError::io("chmod the server directory", e))?;
        toolchain.hand_over(&root_path)?;
        let data_dir = root_path.join("data");
        let watchdog = Watchdog::spawn(toolchain, &data_dir, &root_path, keep_files)?;
        let server = PgServer {
            toolchain,
            root: Some(root),
            endpoint: Endpoint {
                host: "127.0.0.1".to_owned(),
                port: 0,
                socket_dir: root_path.clone(),
                user: "postgres".to_owned(),
            },
            root_path,
            data_dir,
            keep_files,
            state: Mutex::new(ServerState {
                running: false,
                watchdog: Some(watchdog),
            }),
        };
        server.init(&options)?;
        server.first_start()
    }

    fn init(&self, options: &ServerOptions) -> Result<()> {
        let mut initdb = self.toolchain.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .args(&options.initdb_args);
        run(&mut initdb, "initialize a data directory")?;

        let mut conf = String::from("\n# pgwarp test harness\n");
        conf.push_str(&format!(
            "unix_socket_directories = {}\n",
            quote_conf(&self.root_path.to_string_lossy())
        ));
        for (name, value) in DEFAULT_SETTINGS.iter().map(|(n, v)| (*n, *v)).chain(
            options
                .settings
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        ) {
            conf.push_str(&format!("{name} = {}\n", quote_conf(value)));
        }
        let conf_path = self.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| HarnessError::io(format!("append to {}", conf_path.display()), e))?;

        let hba = match &options.hba {
            Some(custom) => format!("{HARNESS_HBA_LINE}{custom}"),
            None => DEFAULT_HBA.to_owned(),
        };
        self.write_file("pg_hba.conf", hba.as_bytes())?;
        for (name, contents) in &options.files {
            self.write_file(name, contents)?;
        }
        Ok(())
    }

    fn first_start(mut self) -> Result<PgServer> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            self.endpoint.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(self),
                Err(e) if self.log_contains_bind_failure() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            HarnessError::Environment("could not find a free port on 127.0.0.1".to_owned())
        }))
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let mut cmd = self.toolchain.server_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-o"])
            .arg(format!("-p {}", self.endpoint.port))
            .arg("start");
        match run(&mut cmd, "start the server") {
            Ok(_) => {
                self.lock_state().running = true;
                Ok(())
            }
            Err(HarnessError::Command {
                program,
                action,
                status,
                output,
            }) => {
                let output = format!("{output}\n--- server.log ---\n{}", self.log_tail(30));
                Err(HarnessError::Command {
                    program,
                    action,
                    status,
                    output,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.root_path.join("server.log")
    }

    fn log_contains_bind_failure(&self) -> bool {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        log.contains("could not bind") || log.contains("Address already in use")
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The last `lines` lines of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.endpoint.port
    }

    /// PGDATA.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's private directory (holds PGDATA, the log and the unix socket).
    pub fn root_dir(&self) -> &Path {
        &self.root_path
    }

    /// Host, port, socket directory and superuser.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The PostgreSQL binaries in use (for `pg_recvlogical`, `pg_dump`, ...).
    pub fn bin_dir(&self) -> &Path {
        self.toolchain.bin_dir()
    }

    /// `host=127.0.0.1 port=P user=postgres dbname=<dbname>`.
    pub fn conn_string(&self, dbname: &str) -> String {
        self.endpoint.conn_string(dbname)
    }

    /// Async connection over TCP; the connection task is spawned on the current runtime.
    pub async fn connect(&self, dbname: &str) -> Result<Client> {
        self.endpoint.connect(dbname).await
    }

    /// Creates a database named `<prefix>_<pid>_<n>` (unique in this process and across test
    /// processes), dropped `WITH (FORCE)` when the returned [`TestDb`] is dropped.
    pub fn create_database(&self, prefix: &str) -> Result<TestDb> {
        TestDb::create(self.endpoint.clone(), &crate::unique_name(prefix))
    }

    /// Creates a database with exactly this name (dropped with the returned [`TestDb`]); for
    /// multi-node fixtures where every node must use the same database name.
    pub fn create_database_named(&self, name: &str) -> Result<TestDb> {
        TestDb::create(self.endpoint.clone(), name)
    }

    /// Runs statements in `dbname` (see [`Endpoint::execute`]).
    pub fn execute(&self, dbname: &str, sql: &str) -> Result<()> {
        self.endpoint.execute(dbname, sql)
    }

    /// One value from `dbname` (see [`Endpoint::query_scalar`]).
    pub fn query_scalar<T: tokio_postgres::types::FromSqlOwned + Send + 'static>(
        &self,
        dbname: &str,
        sql: &str,
    ) -> Result<T> {
        self.endpoint.query_scalar(dbname, sql)
    }

    /// Rows as text from `dbname` (see [`Endpoint::query_rows`]).
    pub fn query_rows(&self, dbname: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        self.endpoint.query_rows(dbname, sql)
    }

    /// A psql script against `dbname` (see [`Endpoint::psql`]).
    pub fn psql(&self, dbname: &str, script: &str) -> Result<String> {
        self.endpoint.psql(dbname, script)
    }

    /// Creates a login role with a password stored under `encryption`. `attributes` is appended
    /// to `CREATE ROLE`, e.g. `"REPLICATION"` or `"SUPERUSER"`. Roles are cluster-wide and are
    /// not dropped: on the shared server use [`crate::unique_name`].
    pub fn create_role(
        &self,
        name: &str,
        password: &str,
        encryption: PasswordEncryption,
        attributes: &str,
    ) -> Result<()> {
        self.execute(
            "postgres",
            &format!(
                "SET password_encryption = {}; CREATE ROLE {} LOGIN PASSWORD {} {attributes}",
                quote_literal(encryption.as_str()),
                quote_ident(name),
                quote_literal(password)
            ),
        )
    }

    /// Writes a file relative to the data directory, owned by the server's OS user, mode 0600
    /// (what PostgreSQL demands of `ssl_key_file`). Existing files are replaced.
    pub fn write_file(&self, relative_path: &str, contents: &[u8]) -> Result<()> {
        let path = self.data_dir.join(relative_path);
        let action = format!("write {}", path.display());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| HarnessError::io(&action, e))?;
        }
        fs::write(&path, contents).map_err(|e| HarnessError::io(&action, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| HarnessError::io(&action, e))?;
        self.toolchain.hand_over(&path)
    }

    /// `ALTER SYSTEM SET name = 'value'`. Takes effect after [`PgServer::reload`] or
    /// [`PgServer::restart`], depending on the setting.
    pub fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(HarnessError::Environment(format!(
                "invalid setting name \"{name}\""
            )));
        }
        self.execute(
            "postgres",
            &format!("ALTER SYSTEM SET {name} = {}", quote_literal(value)),
        )
    }

    /// Reloads the configuration and waits until the postmaster has processed it, so the next
    /// new connection sees the new settings and `pg_hba.conf`.
    pub fn reload(&self) -> Result<()> {
        let load_time = "SELECT pg_conf_load_time()::text";
        let before: String = self.query_scalar("postgres", load_time)?;
        let mut cmd = self.toolchain.server_command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).arg("reload");
        run(&mut cmd, "reload the configuration")?;
        // Each new backend inherits the postmaster's load time, so a changed value means the
        // postmaster has re-read the files. The deadline only bounds a broken server.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now: String = self.query_scalar("postgres", load_time)?;
            if now != before {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::UnexpectedResult(format!(
                    "server on port {} did not reload its configuration",
                    self.port()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server (`pg_ctl stop -m <mode> -w`). Databases and files stay.
    pub fn stop(&self, mode: StopMode) -> Result<()> {
        let mut cmd = self.toolchain.server_command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-m",
            mode.as_str(),
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "stop",
        ]);
        run(&mut cmd, "stop the server")?;
        self.lock_state().running = false;
        Ok(())
    }

    /// Starts a stopped server again on the same port, waiting until it accepts connections
    /// (after crash recovery, if it was stopped with [`StopMode::Immediate`]).
    pub fn start_again(&self) -> Result<()> {
        self.pg_ctl_start()
    }

    /// [`PgServer::stop`] then [`PgServer::start_again`].
    pub fn restart(&self, mode: StopMode) -> Result<()> {
        self.stop(mode)?;
        self.start_again()
    }

    /// Whether the harness believes the server is running (it started it and has not stopped
    /// it since).
    pub fn is_running(&self) -> bool {
        self.lock_state().running
    }

    /// The postmaster's process id, from `postmaster.pid` (None when stopped).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let (running, watchdog) = {
            let mut state = self.lock_state();
            (state.running, state.watchdog.take())
        };
        if running && self.stop(StopMode::Immediate).is_err() {
            // Leave both to the watchdog, which acts when this process exits: removing the
            // directory under a live server would only make things worse.
            std::mem::forget(watchdog);
            if let Some(mut root) = self.root.take() {
                root.disable_cleanup(true);
            }
            return;
        }
        if let Some(watchdog) = watchdog {
            watchdog.disarm();
        }
        if let Some(mut root) = self.root.take() {
            if self.keep_files {
                root.disable_cleanup(true);
                eprintln!(
                    "pgwarp-tests: kept server directory {}",
                    self.root_path.display()
                );
            }
            drop(root);
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| HarnessError::io("bind a probe socket on 127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| HarnessError::io("read the probe socket address", e))?
        .port();
    Ok(port)
}
