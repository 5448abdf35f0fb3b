//! The `aiproxy` binary: arguments in, exit code out; everything else is in the library.
//!
//! Logging is env_logger filtered by `RUST_LOG` (default `info`), with one override whatever the
//! filter says: the HTTP client and TLS crates (`ureq`, `ureq_proto`, `rustls`) log at `info`
//! at most, because their debug/trace output dumps request heads (the upstream
//! `Authorization` header) and bodies.

use log::{LevelFilter, Log, Metadata, Record};

/// Targets whose records above `info` never reach the log.
const CAPPED: &[&str] = &["ureq", "ureq_proto", "rustls"];

/// env_logger with [`CAPPED`] crates held at `info`.
struct Capped(env_logger::Logger);

fn capped(target: &str) -> bool {
    CAPPED.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

impl Log for Capped {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        (m.level() <= log::Level::Info || !capped(m.target())) && self.0.enabled(m)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn main() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max: LevelFilter = logger.filter();
    if log::set_boxed_logger(Box::new(Capped(logger))).is_ok() {
        log::set_max_level(max);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(aiproxy::cli::run(&args));
}
