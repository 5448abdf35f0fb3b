//! stdio transport: the server is our child process; one compact JSON-RPC message per line on
//! its stdin/stdout (transports.mdx "stdio").
//!
//! Thread model: per child, one reader thread owns stdout (decodes lines and calls the client's
//! [`Inbound`]) and one thread drains stderr into the debug log (keeping a short tail for the
//! admin status and start-failure messages; every line is passed through
//! [`crate::secret::scrub`] with the configured secret values first), so the child never blocks
//! on a full pipe. Stderr is the server's diagnostic channel: it is logged at debug level only,
//! never at warn, and never reaches the model (which gets `server 'x' stopped (exit status 1)`
//! from [`Transport::exit_status`]). Writers share stdin under a small lock
//! held for one line; stdin is non-blocking, so a write waits at most until the caller's
//! deadline. Both reader threads poll in short slices and leave once the transport is shut down.
//!
//! The child runs in its own process group with a minimal environment (docs/mcp.md#transports). Shutdown,
//! whoever triggers it (the reader on EOF, `close`, `Drop`): close stdin → wait → SIGTERM the
//! group → wait → SIGKILL the group, then reap. The leader is observed with `WNOWAIT` and
//! reaped last, so the group id cannot be reused while we still signal it.

// Parses bytes from outside: no slicing that could panic.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::process::{
    LineReader, ReadEvent, child_env, exit_status_nowait, set_nonblocking, signal_group,
    user_mode_emulator, write_all_until,
};
use super::{Grace, Inbound, Outbound, SendError, Transport};
use crate::mcp::jsonrpc::{Message, decode_frame, oversized_id};
use crate::mcp::protocol::cut;

/// Longest stdout line (one message) we accept; a longer one is discarded as it arrives and
/// fails only the call it answers.
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// Longest stderr line kept whole; longer ones are dropped with a note.
const MAX_STDERR_LINE: usize = 64 * 1024;
/// How many stderr lines are kept for start-failure messages.
const STDERR_TAIL_LINES: usize = 8;
/// Reader threads check the stop flag and the child's liveness this often.
const POLL: Duration = Duration::from_millis(200);
/// Garbage stdout lines logged at warn level before dropping to debug (a flood must not flood
/// the log).
const GARBAGE_WARNINGS: u32 = 5;

/// What to run.
#[derive(Debug, Clone)]
pub struct StdioSpec<'a> {
    pub command: &'a str,
    pub args: &'a [String],
    /// Configured variables (values are secrets: never logged).
    pub env: Vec<(String, String)>,
    /// Every configured secret value (env values, header values, backend keys): masked in
    /// each stderr line before it is logged or kept.
    pub secrets: Vec<String>,
    pub cwd: Option<&'a Path>,
    pub inherit_env: bool,
}

/// A running stdio server. Dropping it shuts the child down.
pub struct StdioTransport {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    pid: u32,
    inbound: Arc<dyn Inbound>,
    /// The write lock: held for one line. `None` once stdin is closed.
    stdin: Mutex<Option<ChildStdin>>,
    /// `None` once reaped; signals are only sent while it is `Some`.
    child: Mutex<Option<Child>>,
    /// Shutdown requested: readers leave, writers give up.
    closing: AtomicBool,
    open: AtomicBool,
    notified: AtomicBool,
    shutdown_started: AtomicBool,
    shutdown_done: Mutex<bool>,
    shutdown_cv: Condvar,
    stderr_tail: Mutex<VecDeque<String>>,
    stderr_done: AtomicBool,
    garbage: AtomicU32,
    /// Configured secret values: masked in every stderr line we log or quote.
    secrets: Vec<String>,
    /// How the child ended (`exit status 1`, `signal 9`), once known.
    exit: Mutex<Option<String>>,
}

impl StdioTransport {
    /// Spawn the server and start its reader threads. Messages go to `inbound` from now on.
    pub fn spawn(
        name: &str,
        spec: &StdioSpec<'_>,
        inbound: Arc<dyn Inbound>,
    ) -> Result<StdioTransport, String> {
        let command = |program: &std::ffi::OsStr| {
            let mut cmd = Command::new(program);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .env_clear()
                .envs(child_env(
                    std::env::vars_os(),
                    spec.env.iter().cloned(),
                    spec.inherit_env,
                ));
            if let Some(cwd) = spec.cwd {
                cmd.current_dir(cwd);
            }
            cmd
        };
        let mut cmd = command(spec.command.as_ref());
        cmd.args(spec.args);
        let spawned = match cmd.spawn() {
            // Under a user-mode emulator without binfmt_misc, a foreign binary (this one, as
            // `${AIPROXY_EXE} demo-mcp`) only runs through the emulator.
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => match user_mode_emulator() {
                Some(emulator) => {
                    let mut cmd = command(emulator.as_os_str());
                    cmd.arg(spec.command).args(spec.args);
                    cmd.spawn()
                }
                None => Err(e),
            },
            other => other,
        };
        let mut child = spawned.map_err(|e| match spec.cwd {
            Some(cwd) => format!("cannot run {:?} in {}: {e}", spec.command, cwd.display()),
            None => format!("cannot run {:?}: {e}", spec.command),
        })?;
        let pid = child.id();
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let shared = Arc::new(Shared {
            name: name.to_string(),
            pid,
            inbound,
            stdin: Mutex::new(None),
            child: Mutex::new(Some(child)),
            closing: AtomicBool::new(false),
            open: AtomicBool::new(true),
            notified: AtomicBool::new(false),
            shutdown_started: AtomicBool::new(false),
            shutdown_done: Mutex::new(false),
            shutdown_cv: Condvar::new(),
            stderr_tail: Mutex::new(VecDeque::new()),
            stderr_done: AtomicBool::new(false),
            garbage: AtomicU32::new(0),
            secrets: spec
                .env
                .iter()
                .map(|(_, v)| v.clone())
                .chain(spec.secrets.iter().cloned())
                .collect(),
            exit: Mutex::new(None),
        });
        let transport = StdioTransport {
            shared: shared.clone(),
        };
        let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
            return Err("child pipes missing".into());
        };
        set_nonblocking(stdin.as_raw_fd()).map_err(|e| format!("stdin pipe: {e}"))?;
        *shared.stdin.lock() = Some(stdin);
        let s = shared.clone();
        thread::Builder::new()
            .name(format!("mcp-{name}-err"))
            .spawn(move || s.drain_stderr(stderr))
            .map_err(|e| format!("cannot start stderr thread: {e}"))?;
        let s = shared.clone();
        thread::Builder::new()
            .name(format!("mcp-{name}-out"))
            .spawn(move || s.read_stdout(stdout))
            .map_err(|e| format!("cannot start reader thread: {e}"))?;
        log::info!("mcp[{name}]: started {:?} (pid {pid})", spec.command);
        // On any early return above, dropping `transport` shuts the child down.
        Ok(transport)
    }
}

impl Outbound for StdioTransport {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError> {
        self.shared.send(msg, deadline)
    }
}

impl Transport for StdioTransport {
    fn close(&self, grace: Grace) {
        self.shared.shutdown(grace);
    }
    fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::Acquire)
    }
    fn pid(&self) -> Option<u32> {
        Some(self.shared.pid)
    }
    fn stderr_tail(&self) -> Option<String> {
        self.shared.stderr_tail()
    }
    fn exit_status(&self) -> Option<String> {
        self.shared.exit.lock().clone()
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        self.shared.shutdown(Grace::NORMAL);
    }
}

impl Outbound for Shared {
    fn send(&self, msg: &Message, deadline: Instant) -> Result<(), SendError> {
        if !self.open.load(Ordering::Acquire) {
            return Err(SendError::Closed("server is gone".into()));
        }
        let mut line = msg.to_line();
        line.push('\n');
        // Another writer holds the lock for at most its own deadline; ours bounds the wait.
        let Some(mut stdin) = self.stdin.try_lock_until(deadline) else {
            return Err(SendError::Timeout);
        };
        let Some(pipe) = stdin.as_mut() else {
            return Err(SendError::Closed("stdin closed".into()));
        };
        match write_all_until(pipe, line.as_bytes(), deadline, || {
            self.closing.load(Ordering::Acquire)
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(stdin);
                // A line may be half written: the framing is lost, so the session is over. The
                // reader sees the EOF that follows and finishes the shutdown.
                self.open.store(false, Ordering::Release);
                self.signal(libc::SIGKILL);
                if e.kind() == io::ErrorKind::TimedOut {
                    log::warn!(
                        "mcp[{}]: server stopped reading its stdin; killed",
                        self.name
                    );
                    Err(SendError::Timeout)
                } else {
                    Err(SendError::Closed(format!("writing to the server: {e}")))
                }
            }
        }
    }
}

impl Shared {
    fn read_stdout(self: Arc<Self>, stdout: ChildStdout) {
        let mut lines = LineReader::new(stdout, MAX_LINE);
        let reason = loop {
            if self.closing.load(Ordering::Acquire) {
                break "closed".to_string();
            }
            match lines.next(POLL) {
                Ok(ReadEvent::Line(line)) => self.handle_line(&line),
                // The child may exit while a grandchild keeps stdout open: liveness is checked
                // on idle slices, not only by EOF.
                Ok(ReadEvent::Idle) => {
                    if let Some(status) = exit_status_nowait(self.pid) {
                        self.note_exit(&status);
                        break format!("server {status}");
                    }
                }
                Ok(ReadEvent::Eof) => break "server closed its stdout".to_string(),
                // Dropped as it arrived; only the call it answers fails (the session goes on).
                Ok(ReadEvent::TooLong { head, tail }) => {
                    let id = oversized_id(&head, &tail);
                    log::warn!(
                        "mcp[{}]: discarded a message over {MAX_LINE} bytes ({})",
                        self.name,
                        id.as_ref()
                            .map_or("reply to an unknown request".to_string(), |id| format!(
                                "reply to request {id}"
                            ))
                    );
                    self.inbound.on_oversized(id.as_ref(), MAX_LINE);
                }
                Err(e) => break format!("reading server stdout: {e}"),
            }
        };
        self.open.store(false, Ordering::Release);
        if !self.closing.load(Ordering::Acquire) {
            let reason = self.describe_death(reason);
            // The warn line leaves stderr out (debug level only); the closed reason keeps its
            // scrubbed tail for the admin status.
            log::warn!("mcp[{}]: session ended: {reason}", self.name);
            let reason = match self.stderr_tail() {
                Some(tail) => format!("{reason}; stderr: {tail}"),
                None => reason,
            };
            self.notify_closed(&reason);
        }
        self.shutdown(Grace::NORMAL);
    }

    fn handle_line(&self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match decode_frame(line) {
            Ok((msgs, bad)) => {
                for b in bad {
                    log::warn!("mcp[{}]: skipping a bad batch member: {b}", self.name);
                }
                for m in msgs {
                    self.inbound.on_message(m, self);
                }
            }
            Err(e) => {
                let text = cut(&String::from_utf8_lossy(line), 200);
                if self.garbage.fetch_add(1, Ordering::Relaxed) < GARBAGE_WARNINGS {
                    log::warn!(
                        "mcp[{}]: skipping a non-message stdout line ({e}): {text}",
                        self.name
                    );
                } else {
                    log::debug!(
                        "mcp[{}]: skipping a non-message stdout line ({e}): {text}",
                        self.name
                    );
                }
            }
        }
    }

    /// Remember how the child ended, in the short form the model may see.
    fn note_exit(&self, status: &str) {
        let short = if let Some(n) = status.strip_prefix("exited with status ") {
            format!("exit status {n}")
        } else if let Some(n) = status.strip_prefix("killed by signal ") {
            format!("signal {n}")
        } else {
            status.to_string()
        };
        self.exit.lock().get_or_insert(short);
    }

    /// After an unexpected end, give the child a moment to exit and stderr to drain so the
    /// reason names the exit status (the server's last words are added by the caller).
    fn describe_death(&self, reason: String) -> String {
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut status = exit_status_nowait(self.pid);
        while (status.is_none() || !self.stderr_done.load(Ordering::Acquire))
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(10));
            status = status.or_else(|| exit_status_nowait(self.pid));
        }
        if let Some(s) = &status {
            self.note_exit(s);
        }
        match status {
            Some(s) if !reason.contains(&s) => format!("{reason}; server {s}"),
            _ => reason,
        }
    }

    fn notify_closed(&self, reason: &str) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.inbound.on_closed(reason);
        }
    }

    fn drain_stderr(self: Arc<Self>, stderr: ChildStderr) {
        let mut lines = LineReader::new(stderr, MAX_STDERR_LINE);
        loop {
            match lines.next(POLL) {
                Ok(ReadEvent::Line(line)) => {
                    // A server may print its own credentials: masked before anyone sees them.
                    let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                    let text = crate::secret::scrub(&String::from_utf8_lossy(&line), &secrets);
                    log::debug!("mcp[{}] stderr: {}", self.name, cut(&text, 1000));
                    let mut tail = self.stderr_tail.lock();
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(cut(text.trim(), 300));
                }
                Ok(ReadEvent::TooLong { .. }) => {
                    log::debug!("mcp[{}] stderr: (overlong line dropped)", self.name)
                }
                // A grandchild outside the group could hold stderr open forever: stop after
                // the shutdown has finished.
                Ok(ReadEvent::Idle) => {
                    if *self.shutdown_done.lock() {
                        break;
                    }
                }
                Ok(ReadEvent::Eof) | Err(_) => break,
            }
        }
        self.stderr_done.store(true, Ordering::Release);
    }

    fn stderr_tail(&self) -> Option<String> {
        let tail = self.stderr_tail.lock();
        let lines: Vec<&str> = tail
            .iter()
            .map(String::as_str)
            .filter(|l| !l.is_empty())
            .collect();
        (!lines.is_empty()).then(|| lines.join(" | "))
    }

    /// Signal the child's process group, unless the child has been reaped already.
    fn signal(&self, sig: libc::c_int) {
        let child = self.child.lock();
        if child.is_some() {
            signal_group(self.pid, sig);
        }
    }

    fn wait_exit(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if exit_status_nowait(self.pid).is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn shutdown(&self, grace: Grace) {
        if self.shutdown_started.swap(true, Ordering::AcqRel) {
            // Someone else is shutting down: wait for them, bounded.
            let limit = Instant::now() + grace.polite + grace.term + Duration::from_secs(5);
            let mut done = self.shutdown_done.lock();
            while !*done {
                if self.shutdown_cv.wait_until(&mut done, limit).timed_out() {
                    break;
                }
            }
            return;
        }
        let t0 = Instant::now();
        self.closing.store(true, Ordering::Release);
        self.open.store(false, Ordering::Release);
        self.notify_closed("server stopped");
        // Polite close: EOF on its stdin tells a well-behaved server to exit.
        drop(self.stdin.lock().take());
        let mut exited = self.wait_exit(grace.polite);
        if !exited {
            log::info!(
                "mcp[{}]: still running after stdin closed; sending SIGTERM",
                self.name
            );
            self.signal(libc::SIGTERM);
            exited = self.wait_exit(grace.term);
        }
        if !exited {
            log::warn!(
                "mcp[{}]: still running after SIGTERM; sending SIGKILL",
                self.name
            );
            self.signal(libc::SIGKILL);
            exited = self.wait_exit(Duration::from_secs(2));
        }
        // The leader is a zombie now (not reaped), so the group id is still ours: kill whatever
        // it left behind in its group (npx-style grandchildren).
        self.signal(libc::SIGKILL);
        let child = self.child.lock().take();
        if let Some(mut child) = child {
            if exited {
                if let Err(e) = child.wait() {
                    log::warn!("mcp[{}]: reaping pid {}: {e}", self.name, self.pid);
                }
            } else {
                log::error!(
                    "mcp[{}]: pid {} survived SIGKILL; leaving it",
                    self.name,
                    self.pid
                );
            }
        }
        log::debug!(
            "mcp[{}]: stopped in {} ms",
            self.name,
            t0.elapsed().as_millis()
        );
        *self.shutdown_done.lock() = true;
        self.shutdown_cv.notify_all();
    }
}
