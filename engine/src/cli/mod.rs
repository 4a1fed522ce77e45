//! Command-line commands of the `pgwarp` binary.
//!
//! Commands are clap (derive) structs; [`run`] dispatches one and writes its output to the
//! given writer, so tests can run a command in-process and read what it printed. `anyhow` is
//! used here and in `main` only: library modules return their own error types.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod connect;
pub mod route;

/// pgwarp: move a live PostgreSQL database into Citus.
#[derive(Debug, Parser)]
#[command(name = "pgwarp", version, about)]
pub struct Cli {
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
    /// Show where Citus places a distribution value: shard id, shard table and node(s).
    Route(route::RouteArgs),
}

/// Runs one parsed command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Route(args) => route::run(&args, out).await,
    }
}

/// The binary's entry point: parses the arguments, runs the command on a tokio runtime and
/// turns an error into a message on stderr and exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PGWARP_LOG"))
        .with_writer(std::io::stderr)
        .init();
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
            eprintln!("pgwarp: {err:#}");
            ExitCode::FAILURE
        }
    }
}
