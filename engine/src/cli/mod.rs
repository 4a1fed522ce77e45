//! Command-line commands of the `pgwarp` binary.
//!
//! Commands are clap (derive) structs; [`run`] dispatches one and writes its output to the
//! given writer, so tests can run a command in-process and read what it printed. `anyhow` is
//! used here and in `main` only: library modules return their own error types.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check;
pub mod cleanup;
pub mod connect;
pub mod cutover;
pub mod demo;
pub mod plan;
pub mod progress;
pub mod route;
pub mod schema;
pub mod status;
pub mod sync;
pub mod verify;

/// pgwarp: move a live PostgreSQL database into Citus.
#[derive(Debug, Parser)]
#[command(name = "pgwarp", version, about)]
pub struct Cli {
    /// Log format: text or json (logs go to stderr; PGWARP_LOG sets the filter, e.g. debug).
    #[arg(long, global = true, env = "PGWARP_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses arguments (the first one is the program name), for running commands in-process.
    pub fn try_from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Cli as Parser>::try_parse_from(args)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy the tables and follow every change: snapshot, then stream (resumes when run again).
    Sync(sync::SyncArgs),
    /// Find everything that would stop a sync, all at once.
    Check(check::CheckArgs),
    /// Show a sync's phase, snapshot progress, lag per node and slot health.
    Status(status::StatusArgs),
    /// Migrate a live storefront into a local Citus-shaped cluster, end to end, and verify it.
    Demo(demo::DemoArgs),
    /// Show where Citus places a distribution value: shard id, shard table and node(s).
    Route(route::RouteArgs),
    /// Compare source and target by row counts and checksums, shard by shard (exit 0 equal,
    /// 1 different, 2 error).
    Verify(verify::VerifyArgs),
    /// Fence the source, let the sync catch up, copy sequences, verify, drop slot and
    /// publication; print the write downtime.
    Cutover(cutover::CutoverArgs),
    /// Remove the slot, the publication and the pgwarp state on every node (safe to re-run).
    Cleanup(cleanup::CleanupArgs),
    /// Propose a distribution: tenant key, colocation groups, reference and local tables.
    Plan(plan::PlanArgs),
    /// Copy the tables' definitions to the target (pg_dump --schema-only) and apply a plan.
    Schema(schema::SchemaArgs),
}

/// Runs one parsed command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Sync(args) => sync::run(&args, out).await,
        Command::Check(args) => check::run(&args, out).await,
        Command::Status(args) => status::run(&args, out).await,
        Command::Demo(args) => demo::run(&args, out).await,
        Command::Route(args) => route::run(&args, out).await,
        Command::Verify(args) => verify::run(&args, out).await,
        Command::Cutover(args) => cutover::run(&args, out).await,
        Command::Cleanup(args) => cleanup::run(&args, out).await,
        Command::Plan(args) => plan::run(&args, out).await,
        Command::Schema(args) => schema::run(&args, out).await,
    }
}

/// The binary's entry point: parses the arguments, runs the command on a tokio runtime and
/// turns an error into a message on stderr and exit status 1.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// [`main`] with explicit arguments (the first is the program name): what the binary does,
/// callable from another process image (the kill tests run it in a child process this way).
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGWARP_LOG")
        // tokio_postgres logs every server NOTICE at info ("schema ... already exists,
        // skipping" from idempotent DDL): keep those out of the default output
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_postgres=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(progress::LogWriter::stderr);
    let installed = if cli.log_format.as_deref() == Some("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    drop(installed);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("pgwarp: could not start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(run(cli, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pgwarp: {}", error_line(&err));
            ExitCode::from(verify::exit_status(&err))
        }
    }
}

/// The message of `err` and its causes, joined with `: `, leaving out a cause whose text the
/// message already holds: many errors put their cause in their own message and also expose
/// it as `source()`, and `{:#}` would print it twice.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
