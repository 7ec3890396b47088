//! The `faultline` binary: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc: a large fan-out allocates from many threads at once, and
/// glibc's per-thread arenas kept hundreds of MiB of freed memory resident (docs/performance-history.md).
///
/// It serves C's `malloc` as well (the crate's `unprefixed_malloc_on_supported_platforms`), so
/// SQLite allocates from it too. Under glibc, SQLite's thread spent a tenth of its time in
/// `malloc`, `free` and their arena lock; with jemalloc its CPU over a million-notice fan-out
/// fell by a fifth (36.9 and 35.8 s → 28.8 and 29.6 s, docs/performance-history.md), at the same RSS.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("faultline: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = faultline::cli::Cli::parse();
    match faultline::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("faultline: {e:#}");
            ExitCode::FAILURE
        }
    }
}
