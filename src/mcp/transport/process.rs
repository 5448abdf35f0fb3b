//! Low-level pieces of the stdio transport: the child's environment, bounded line reading and
//! deadline-bounded writing on pipes. The syscalls behind them (`poll(2)`, `fcntl`, process-group
//! signalling and exit checks that do not reap) are in [`crate::sys::process`] and re-exported
//! here. No threads of its own; every blocking call here takes a timeout.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub use crate::sys::process::{Ready, exit_status_nowait, poll_fd, set_nonblocking, signal_group};

/// Variables a child gets from our environment when `inherit_env` is off (docs/mcp.md#transports): enough to
/// find programs, write temp files and format text; nothing that may carry a credential.
pub const SAFE_ENV_VARS: [&str; 10] = [
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "SHELL", "TERM",
];

/// The child's environment: the safe subset of `parent` (or all of it with `inherit`), then the
/// configured variables on top.
pub fn child_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    configured: impl IntoIterator<Item = (String, String)>,
    inherit: bool,
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| inherit || SAFE_ENV_VARS.iter().any(|s| k == s))
        .collect();
    for (k, v) in configured {
        let k = OsString::from(k);
        out.retain(|(existing, _)| *existing != k);
        out.push((k, OsString::from(v)));
    }
    out
}

/// The user-mode emulator (e.g. `qemu-aarch64-static`) this process runs under, if any. Such an
/// emulator fakes `/proc/self/exe` as the guest binary but not `/proc/thread-self/exe`, so the
/// two differ only under emulation. Without a binfmt_misc registration a foreign binary (this
/// one, spawned as `${AIPROXY_EXE} demo-mcp`) cannot be exec'd directly; it has to go through
/// the emulator again.
pub fn user_mode_emulator() -> Option<std::path::PathBuf> {
    let guest = std::fs::read_link("/proc/self/exe").ok()?;
    let host = std::fs::read_link("/proc/thread-self/exe").ok()?;
    (guest != host).then_some(host)
}

/// Write all of `buf` to a non-blocking pipe before `deadline`, waiting for room in short slices
/// and giving up early when `abort()` says so. On error, some prefix may have been written.
pub fn write_all_until<W: Write + AsRawFd>(
    w: &mut W,
    buf: &[u8],
    deadline: Instant,
    abort: impl Fn() -> bool,
) -> io::Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match w.write(&buf[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                if abort() {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "closing"));
                }
                poll_fd(
                    w.as_raw_fd(),
                    Ready::Write,
                    (deadline - now).min(Duration::from_millis(100)),
                )?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes kept from each end of an overlong line.
pub const OVERLONG_KEEP: usize = 512;

/// What one step of a [`LineReader`] produced.
#[derive(Debug, PartialEq)]
pub enum ReadEvent {
    /// A complete line, without its `\n` (and without a `\r` before it).
    Line(Vec<u8>),
    /// Nothing arrived within the poll timeout.
    Idle,
    /// End of stream; any unterminated last line was returned before this.
    Eof,
    /// A line longer than the limit ended (at its newline); it was dropped as it arrived,
    /// keeping only its first and last [`OVERLONG_KEEP`] bytes (where a JSON-RPC id is).
    TooLong { head: Vec<u8>, tail: Vec<u8> },
}

/// Splits a pipe into lines, each at most `max` bytes, polling so the owner can check its stop
/// flag between reads. Consumed lines are dropped from the buffer once per read (not once per
/// line), so a burst of small lines costs linear time.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// Bytes of `buf` before this index hold no newline past `start`.
    scanned: usize,
    max: usize,
    eof: bool,
    /// Dropping the rest of an overlong line, up to its newline.
    skipping: bool,
    /// The first and (so far) last bytes of the overlong line being dropped.
    skip_head: Vec<u8>,
    skip_tail: Vec<u8>,
    /// What one read may bring ([`READ_CHUNK`]), zeroed once at the first read rather than at
    /// every read (64 KiB of stack cleared per reply cost more than the reply's parse).
    chunk: Vec<u8>,
}

/// The most one read of the pipe takes: a pipe's default capacity.
const READ_CHUNK: usize = 64 * 1024;

/// `tail` followed by `more`, cut to its last [`OVERLONG_KEEP`] bytes.
fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(&more[more.len().saturating_sub(OVERLONG_KEEP)..]);
    let excess = tail.len().saturating_sub(OVERLONG_KEEP);
    tail.drain(..excess);
}

impl<R: Read + AsRawFd> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max,
            eof: false,
            skipping: false,
            skip_head: Vec::new(),
            skip_tail: Vec::new(),
            chunk: Vec::new(),
        }
    }

    fn overlong(&mut self) -> ReadEvent {
        self.skipping = false;
        ReadEvent::TooLong {
            head: std::mem::take(&mut self.skip_head),
            tail: std::mem::take(&mut self.skip_tail),
        }
    }

    pub fn next(&mut self, poll: Duration) -> io::Result<ReadEvent> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + pos;
                let line = &self.buf[self.start..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let too_long = end - self.start > self.max;
                if self.skipping || too_long {
                    if !self.skipping {
                        self.skip_head = line[..line.len().min(OVERLONG_KEEP)].to_vec();
                    }
                    keep_tail(&mut self.skip_tail, line);
                    self.start = end + 1;
                    self.scanned = self.start;
                    return Ok(self.overlong());
                }
                let line = line.to_vec();
                self.start = end + 1;
                self.scanned = self.start;
                return Ok(ReadEvent::Line(line));
            }
            self.scanned = self.buf.len();
            if self.buf.len() - self.start > self.max {
                // Drop what we have of the overlong line, keeping its two ends.
                let pending = &self.buf[self.start..];
                if !self.skipping {
                    self.skip_head = pending[..pending.len().min(OVERLONG_KEEP)].to_vec();
                    self.skipping = true;
                }
                keep_tail(&mut self.skip_tail, pending);
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
            } else if self.skipping {
                let pending = &self.buf[self.start..];
                keep_tail(&mut self.skip_tail, pending);
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
            }
            if self.eof {
                let rest = self.buf.split_off(self.start);
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
                if rest.is_empty() || std::mem::take(&mut self.skipping) {
                    self.skip_head.clear();
                    self.skip_tail.clear();
                    return Ok(ReadEvent::Eof);
                }
                return Ok(ReadEvent::Line(rest));
            }
            if !poll_fd(self.inner.as_raw_fd(), Ready::Read, poll)? {
                return Ok(ReadEvent::Idle);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            if self.chunk.is_empty() {
                self.chunk = vec![0; READ_CHUNK];
            }
            match self.inner.read(&mut self.chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn no_emulator_when_running_natively() {
        // The test binary runs natively: /proc/self/exe and /proc/thread-self/exe agree.
        assert_eq!(user_mode_emulator(), None);
        assert!(std::fs::read_link("/proc/thread-self/exe").is_ok());
    }

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn child_env_keeps_only_safe_vars_plus_configured() {
        let parent = os(&[
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("OPENAI_API_KEY", "sk-secret"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("LANG", "C.UTF-8"),
            ("ADMIN_API_KEY", "adm"),
        ]);
        let env = child_env(
            parent.clone(),
            [("FOO".to_string(), "bar".to_string())],
            false,
        );
        let keys: Vec<_> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(keys, ["PATH", "HOME", "LANG", "FOO"]);

        let env = child_env(
            parent.clone(),
            [("PATH".to_string(), "/opt".to_string())],
            false,
        );
        assert!(env.contains(&(OsString::from("PATH"), OsString::from("/opt"))));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);

        let env = child_env(parent, [], true);
        assert!(env.iter().any(|(k, _)| k == "OPENAI_API_KEY"));
    }

    #[test]
    fn line_reader_splits_bounds_and_flushes_last_line() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"one\r\ntwo\n").unwrap();
        a.write_all(&[b'x'; 100]).unwrap();
        a.write_all(b"\nshort\nlast").unwrap();
        drop(a);
        let mut r = LineReader::new(b, 50);
        let t = Duration::from_secs(2);
        assert_eq!(r.next(t).unwrap(), ReadEvent::Line(b"one".to_vec()));
        assert_eq!(r.next(t).unwrap(), ReadEvent::Line(b"two".to_vec()));
        assert!(matches!(r.next(t).unwrap(), ReadEvent::TooLong { .. }));
        assert_eq!(r.next(t).unwrap(), ReadEvent::Line(b"short".to_vec()));
        assert_eq!(r.next(t).unwrap(), ReadEvent::Line(b"last".to_vec()));
        assert_eq!(r.next(t).unwrap(), ReadEvent::Eof);
    }

    #[test]
    fn line_reader_skips_the_rest_of_an_overlong_line_across_reads() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut r = LineReader::new(b, 10);
        let t = Duration::from_secs(2);
        a.write_all(b"ok\n0123456789abcdef").unwrap();
        assert_eq!(r.next(t).unwrap(), ReadEvent::Line(b"ok".to_vec()));
        assert_eq!(r.next(Duration::from_millis(20)).unwrap(), ReadEvent::Idle);
        a.write_all(b"more of the same long line\nnext\n").unwrap();
        assert_eq!(
            r.next(t).unwrap(),
            ReadEvent::TooLong {
                head: b"0123456789abcdef".to_vec(),
                tail: b"0123456789abcdefmore of the same long line".to_vec()
            }
        );
        assert_eq!(r.next(t).unwrap(), ReadEvent::Line(b"next".to_vec()));
        let many: Vec<u8> = (0..5000)
            .flat_map(|i| format!("l{i}\n").into_bytes())
            .collect();
        a.write_all(&many).unwrap();
        drop(a);
        for i in 0..5000 {
            assert_eq!(
                r.next(t).unwrap(),
                ReadEvent::Line(format!("l{i}").into_bytes())
            );
        }
        assert_eq!(r.next(t).unwrap(), ReadEvent::Eof);
    }

    #[test]
    fn an_overlong_line_keeps_only_its_two_ends() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut r = LineReader::new(b, 1000);
        let t = Duration::from_secs(2);
        let writer = std::thread::spawn(move || {
            a.write_all(b"{\"id\":7,\"result\":\"").unwrap();
            for _ in 0..300 {
                a.write_all(&[b'x'; 1000]).unwrap();
            }
            a.write_all(b"\"}\nafter\n").unwrap();
        });
        let ReadEvent::TooLong { head, tail } = r.next(t).unwrap() else {
            panic!()
        };
        assert!(head.starts_with(b"{\"id\":7,"));
        assert_eq!(head.len(), OVERLONG_KEEP);
        assert!(tail.ends_with(b"xx\"}"));
        assert_eq!(tail.len(), OVERLONG_KEEP);
        assert!(r.buf.capacity() < 1000 + 128 * 1024, "{}", r.buf.capacity());
        assert_eq!(r.next(t).unwrap(), ReadEvent::Line(b"after".to_vec()));
        writer.join().unwrap();
    }

    #[test]
    fn line_reader_reports_idle() {
        let (_a, b) = UnixStream::pair().unwrap();
        let mut r = LineReader::new(b, 50);
        assert_eq!(r.next(Duration::from_millis(20)).unwrap(), ReadEvent::Idle);
    }

    #[test]
    fn bounded_write_times_out_on_a_full_pipe() {
        let (mut a, _b) = UnixStream::pair().unwrap();
        set_nonblocking(a.as_raw_fd()).unwrap();
        let big = vec![b'x'; 8 << 20];
        let t0 = Instant::now();
        let err = write_all_until(
            &mut a,
            &big,
            Instant::now() + Duration::from_millis(200),
            || false,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}
