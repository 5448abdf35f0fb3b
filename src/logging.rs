//! The process logger. `RUST_LOG` filters it (env_logger's syntax, default `info`), with one
//! override whatever the filter says: the HTTP client and TLS crates (`ureq`, `ureq_proto`,
//! `rustls`) log at `info` at most, because their debug/trace output dumps request heads (the
//! upstream `Authorization` header) and bodies.
//!
//! Lines look like env_logger's (`[2026-12-02T17:54:12Z INFO  aiproxy::gateway::routes] …`).
//! On a terminal env_logger writes them (with colours). Otherwise (systemd, containers, tests)
//! each line is formatted in a buffer of the logging thread and written to stderr with one
//! `write`, taking no lock: with one access line per request, env_logger's formatting and its
//! stderr lock cost ~7 % of a plain request's instructions and were a point of contention
//! between workers. A line up to the pipe buffer's atomic size (4 KiB) never interleaves with
//! another thread's.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal, Write as _};
use std::os::fd::AsFd;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Targets whose records above `info` never reach the log.
const CAPPED: &[&str] = &["ureq", "ureq_proto", "rustls"];

/// A thread's line buffer is dropped rather than kept when a line made it larger than this.
const KEEP_LINE_BYTES: usize = 16 * 1024;

/// Install the logger (once per process; later calls change nothing).
pub fn init() {
    let filter =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max: LevelFilter = filter.filter();
    let stderr = std::io::stderr();
    let out = if stderr.is_terminal() {
        None
    } else {
        stderr.as_fd().try_clone_to_owned().ok().map(File::from)
    };
    if log::set_boxed_logger(Box::new(Logger { filter, out })).is_ok() {
        log::set_max_level(max);
    }
}

struct Logger {
    /// env_logger: the `RUST_LOG` filter, and the writer on a terminal.
    filter: env_logger::Logger,
    /// stderr (a duplicate descriptor), written without a lock; `None` on a terminal.
    out: Option<File>,
}

fn capped(target: &str) -> bool {
    CAPPED.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        (m.level() <= Level::Info || !capped(m.target())) && self.filter.enabled(m)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some(out) = &self.out else {
            self.filter.log(record);
            return;
        };
        if !self.filter.matches(record) {
            return;
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            format_line(line, crate::clock::unix_now(), record);
            // Nowhere to report a failed write to stderr.
            let _ = (&*out).write_all(line.as_bytes());
            if line.capacity() > KEEP_LINE_BYTES {
                *line = String::new();
            }
        });
    }

    fn flush(&self) {
        self.filter.flush();
    }
}

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The last second formatted on this thread, and its text.
    static STAMP: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `[<time> <LEVEL> <target>] <message>\n`, as env_logger's default format writes it.
fn format_line(line: &mut String, unix_secs: u64, record: &Record<'_>) {
    line.push('[');
    STAMP.with_borrow_mut(|(secs, text)| {
        if *secs != unix_secs {
            *secs = unix_secs;
            *text = crate::clock::rfc3339(unix_secs);
        }
        line.push_str(text);
    });
    // Writing to a `String` cannot fail.
    let _ = writeln!(
        line,
        " {:<5} {}] {}",
        record.level(),
        record.target(),
        record.args()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(secs: u64, level: Level, target: &str, args: std::fmt::Arguments<'_>) -> String {
        let record = Record::builder()
            .level(level)
            .target(target)
            .args(args)
            .build();
        let mut out = String::new();
        format_line(&mut out, secs, &record);
        out
    }

    #[test]
    fn lines_look_like_env_loggers() {
        assert_eq!(
            line(
                1_767_323_045,
                Level::Info,
                "aiproxy::gateway::routes",
                format_args!("req-1 POST /v1/chat/completions status={}", 200)
            ),
            "[2026-01-02T03:04:05Z INFO  aiproxy::gateway::routes] req-1 POST /v1/chat/completions status=200\n"
        );
        assert_eq!(
            line(0, Level::Error, "x", format_args!("boom")),
            "[1970-01-01T00:00:00Z ERROR x] boom\n"
        );
        // The cached second is replaced when the clock moves on.
        assert!(
            line(1, Level::Warn, "x", format_args!(""))
                .starts_with("[1970-01-01T00:00:01Z WARN  x]")
        );
    }

    #[test]
    fn http_client_and_tls_crates_are_capped() {
        assert!(capped("ureq") && capped("ureq::pool") && capped("ureq_proto::client"));
        assert!(capped("rustls::conn"));
        assert!(!capped("ureqx") && !capped("aiproxy::backend"));
    }
}
