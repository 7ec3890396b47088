//! The `faultline` binary: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc: a large fan-out allocates from many threads at once, and
/// glibc's per-thread arenas kept hundreds of MiB of freed memory resident (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = faultline::cli::Cli::parse();
    match faultline::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("faultline: {e:#}");
            ExitCode::FAILURE
        }
    }
}
