//! The `faultline` binary: parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc: a large fan-out allocates from many threads at once, and
/// glibc's per-thread arenas kept hundreds of MiB of freed memory resident (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // SQLite is C and allocates with glibc's malloc, which keeps an arena per thread that touched
    // it; sqlx runs each connection on its own thread, and a fan-out's big queries left hundreds
    // of MiB of freed memory resident across those arenas. One arena is enough for a handful
    // of database threads. Set before any thread exists.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
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
