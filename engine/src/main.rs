//! The `pgwarp` binary: everything lives in the library; see [`pgwarp::cli`].

fn main() -> std::process::ExitCode {
    pgwarp::cli::main()
}
