//! Event-based waits for tests: poll a condition until it holds (with a generous deadline), and
//! follow a child's log on stderr until a line appears. Use these instead of a fixed sleep before
//! an assertion: a sleep passes on a slow machine without the awaited thing having happened.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(10);

/// Poll `cond` every 10 ms until it is true; panics naming `what` after `timeout`.
pub fn until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "not within {timeout:?}: {what}");
        std::thread::sleep(POLL);
    }
}

/// Poll `f` every 10 ms until it returns `Some`; panics naming `what` after `timeout`.
pub fn for_some<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "not within {timeout:?}: {what}");
        std::thread::sleep(POLL);
    }
}

/// The lines a child writes to a pipe (usually its stderr), read by a thread of their own so
/// the child never blocks on a full pipe. Every line is also echoed to the test's stderr.
pub struct LogLines {
    rx: Receiver<String>,
    /// Every line received so far, for failure messages.
    seen: Vec<String>,
}

impl LogLines {
    pub fn follow(pipe: impl Read + Send + 'static) -> LogLines {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                eprintln!("child: {line}");
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the child never blocks.
                }
            }
        });
        LogLines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait for the next line containing `needle`; panics after `timeout` or when the pipe
    /// closes first. Lines before it are skipped (and kept for the failure message).
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {needle:?} within {timeout:?}; seen:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the log closed before a line with {needle:?}; seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}
