//! The tool audit log (`audit: {path, max_bytes, keep, include_arguments}`): one JSON line per
//! MCP tool call — time (RFC 3339, UTC, milliseconds), request id, API key *name* (never the
//! key), assistant, MCP server, tool (its original name and the exposed one), the arguments'
//! size in bytes and FNV-1a 64-bit hash (hex; of the raw argument text the model sent) — or
//! the arguments themselves with `include_arguments: true` —, duration and outcome.
//!
//! Written off the request path: a worker hands a finished line to a bounded queue
//! ([`QUEUE_LINES`]) with `try_send` and never waits; when the queue is full the line is
//! dropped and counted (`aiproxy_audit_dropped_total`). One writer thread per configured log
//! appends each line with one `write` (`O_APPEND`), and rotates by size before a line would
//! take the file past `max_bytes`: `path.{keep-1}` → `path.{keep}` … `path` → `path.1`
//! (`keep: 0` truncates in place). A config change or reload (SIGHUP, `POST /admin/reload`, the
//! file watcher) reopens the file, so logrotate's `create`/rename works without `copytruncate`.
//! The thread ends when the last snapshot holding the log is dropped. A file that cannot be
//! opened is logged (at most once a minute) and its lines are lost until it can be.
//!
//! FNV-1a is not a cryptographic hash: it identifies equal arguments across lines without
//! storing them; it does not hide low-entropy arguments from someone who can guess them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::AuditConfig;

/// Lines waiting for the writer at most; beyond, lines are dropped (and counted).
pub const QUEUE_LINES: usize = 4096;

enum Msg {
    Line(String),
    Reopen,
}

/// A running audit log. Shared by the snapshots that use the same settings.
pub struct AuditLog {
    config: AuditConfig,
    tx: SyncSender<Msg>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditLog({})", self.config.path.display())
    }
}

/// One finished tool call.
pub struct Record<'a> {
    pub request_id: &'a str,
    pub key: Option<&'a str>,
    pub assistant: &'a str,
    /// `None` for a tool the model made up (not offered).
    pub server: Option<&'a str>,
    pub tool: Option<&'a str>,
    /// The name the model called.
    pub exposed: &'a str,
    /// The raw argument text the model sent.
    pub arguments: &'a str,
    pub duration: Duration,
    pub outcome: &'a str,
}

impl AuditLog {
    /// Start the writer thread for `config` (the file is opened by the thread).
    pub fn start(config: &AuditConfig) -> std::io::Result<AuditLog> {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let cfg = config.clone();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || Writer::new(cfg).run(&rx))?;
        Ok(AuditLog {
            config: config.clone(),
            tx,
        })
    }

    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// Queue one line; `false` when it was dropped (queue full, or the writer is gone).
    pub fn record(&self, r: &Record<'_>) -> bool {
        let line = self.line(r, crate::clock::unix_nanos());
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Reopen the file (after a reload; logrotate).
    pub fn reopen(&self) {
        // A full queue already holds work for the writer; the next reload will reopen.
        let _ = self.tx.try_send(Msg::Reopen);
    }

    fn line(&self, r: &Record<'_>, unix_nanos: u64) -> String {
        let mut v = json!({
            "time": crate::clock::rfc3339_millis(unix_nanos),
            "request_id": r.request_id,
            "key": r.key,
            "assistant": r.assistant,
            "server": r.server,
            "tool": r.tool,
            "exposed_tool": r.exposed,
            "arguments_bytes": r.arguments.len(),
            "duration_ms": (r.duration.as_secs_f64() * 1e6).round() / 1e3,
            "outcome": r.outcome,
        });
        if self.config.include_arguments {
            // As JSON when it parses (it usually does), else as the text the model sent.
            v["arguments"] = serde_json::from_str::<Value>(r.arguments)
                .unwrap_or_else(|_| Value::String(r.arguments.to_string()));
        } else {
            v["arguments_fnv1a64"] = json!(format!("{:016x}", fnv1a64(r.arguments.as_bytes())));
        }
        let mut line = v.to_string();
        line.push('\n');
        line
    }
}

/// FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct Writer {
    config: AuditConfig,
    file: Option<File>,
    size: u64,
    /// When opening last failed (failures are logged once a minute).
    failed_at: Option<Instant>,
}

impl Writer {
    fn new(config: AuditConfig) -> Writer {
        Writer {
            config,
            file: None,
            size: 0,
            failed_at: None,
        }
    }

    fn run(mut self, rx: &Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Reopen => self.file = None,
                Msg::Line(line) => self.write(line.as_bytes()),
            }
        }
    }

    fn write(&mut self, line: &[u8]) {
        if self.file.is_none() {
            self.open();
        }
        if self.file.is_some()
            && self.size > 0
            && self.size + line.len() as u64 > self.config.max_bytes
        {
            self.rotate();
        }
        let Some(f) = &mut self.file else { return };
        match f.write_all(line) {
            Ok(()) => self.size += line.len() as u64,
            Err(e) => {
                log::error!(
                    "audit log {}: write failed: {e}",
                    self.config.path.display()
                );
                self.file = None;
            }
        }
    }

    fn open(&mut self) {
        let path = &self.config.path;
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .and_then(|f| Ok((f.metadata()?.len(), f)));
        match opened {
            Ok((size, f)) => {
                self.file = Some(f);
                self.size = size;
                self.failed_at = None;
            }
            Err(e) => {
                let quiet = self
                    .failed_at
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                if !quiet {
                    log::error!("audit log {}: cannot open: {e}", path.display());
                    self.failed_at = Some(Instant::now());
                }
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let path = &self.config.path;
        let keep = self.config.keep;
        if keep == 0 {
            if let Err(e) = File::create(path) {
                log::error!("audit log {}: cannot truncate: {e}", path.display());
            }
        } else {
            for i in (1..keep).rev() {
                let _ = std::fs::rename(numbered(path, i), numbered(path, i + 1));
            }
            if let Err(e) = std::fs::rename(path, numbered(path, 1)) {
                log::error!("audit log {}: cannot rotate: {e}", path.display());
            }
        }
        self.open();
    }
}

/// `path.n`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn full_queue_drops_instead_of_waiting() {
        // A FIFO without a reader: the writer blocks opening it, so the queue fills up.
        let dir = std::env::temp_dir().join(format!("aiproxy-audit-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("audit.fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let log = AuditLog::start(&AuditConfig {
            path: fifo.clone(),
            max_bytes: 1 << 20,
            keep: 0,
            include_arguments: false,
        })
        .unwrap();
        let rec = Record {
            request_id: "r",
            key: None,
            assistant: "a",
            server: Some("s"),
            tool: Some("t"),
            exposed: "s__t",
            arguments: "{}",
            duration: Duration::from_millis(1),
            outcome: "ok",
        };
        let started = Instant::now();
        let queued = (0..QUEUE_LINES + 100).filter(|_| log.record(&rec)).count();
        assert!(started.elapsed() < Duration::from_secs(5), "record waited");
        assert!(
            (QUEUE_LINES..QUEUE_LINES + 100).contains(&queued),
            "{queued}"
        );
        // Let the writer go: read the FIFO until the writer closes it.
        let reader = std::thread::spawn(move || std::fs::read(&fifo).map(|b| b.len()));
        drop(log);
        let n = reader.join().unwrap().unwrap();
        assert!(n > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
