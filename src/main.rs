//! The `aiproxy` binary: arguments in, exit code out; everything else is in the library
//! (logging: [`aiproxy::logging`]).

/// The release binaries are static (musl): they allocate through jemalloc, configured without
/// per-thread caches in `.cargo/config.toml` (a thread cache each would cost ~70 KiB per busy
/// worker). Development builds (glibc) keep glibc's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    aiproxy::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(aiproxy::cli::run(&args));
}
