//! Run a process with its output watched line by line, every wait bounded; temp dirs; `/proc`
//! scans for children and process groups.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, unbounded};

/// The binary under test (debug build of this checkout).
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aiproxy"))
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aiproxy-ops-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
}

/// A child process whose stdout and stderr lines are collected by two reader threads.
/// Dropping it kills the process (SIGKILL) if it is still running.
pub struct Proc {
    child: Child,
    lines: Receiver<(Out, String)>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let (tx, rx) = unbounded();
        fn pump(
            r: impl Read + Send + 'static,
            which: Out,
            tx: crossbeam_channel::Sender<(Out, String)>,
        ) {
            thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { return };
                    if tx.send((which, line)).is_err() {
                        return;
                    }
                }
            });
        }
        pump(child.stdout.take().unwrap(), Out::Stdout, tx.clone());
        pump(child.stderr.take().unwrap(), Out::Stderr, tx);
        Proc {
            child,
            lines: rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn keep(&mut self, (which, line): (Out, String)) -> String {
        match which {
            Out::Stdout => self.stdout.push(line.clone()),
            Out::Stderr => self.stderr.push(line.clone()),
        }
        line
    }

    /// Wait for a new line (stdout or stderr) matching `pred`.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(item) => {
                    let line = self.keep(item);
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no matching line within {timeout:?}; stderr so far:\n{}",
                    self.stderr.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "process ended without a matching line; stderr:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// Take in the lines that arrived so far.
    pub fn drain(&mut self) {
        while let Ok(item) = self.lines.try_recv() {
            self.keep(item);
        }
    }

    /// Wait for the exit, then for the rest of its output (bounded).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                self.drain();
                panic!(
                    "process {} still running after {timeout:?}; stderr:\n{}",
                    self.pid(),
                    self.stderr.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.status = Some(status);
        let out_deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = out_deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(item) => {
                    self.keep(item);
                }
                Err(_) => break,
            }
        }
        status
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `cmd` (an `aiproxy serve … --listen 127.0.0.1:0` command line) and wait for the line
/// that says where it listens.
pub fn serve(cmd: Command, timeout: Duration) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(cmd);
    let line = p.wait_line(timeout, |l| l.contains(" listening on http://"));
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (p, addr)
}

/// Like [`serve`], also waiting for the admin listener's line: (process, main, admin).
pub fn serve_with_admin(cmd: Command, timeout: Duration) -> (Proc, SocketAddr, SocketAddr) {
    let (mut p, addr) = serve(cmd, timeout);
    let line = p.wait_line(timeout, |l| l.contains("admin API and /metrics on http://"));
    let admin = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {line:?}"));
    (p, addr, admin)
}

/// `aiproxy serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 <args>` in `dir`, logging at
/// info.
pub fn serve_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(exe());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env_remove("CONFIG_PATH")
        .env_remove("AIPROXY_LISTEN")
        .env_remove("AIPROXY_ADMIN_LISTEN")
        .env_remove("ADMIN_API_KEY");
    cmd
}

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    #[allow(dead_code, reason = "shown in assertion messages via Debug")]
    pub comm: String,
}

/// Every process visible in `/proc`.
pub fn processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if rest.len() < 3 {
            continue;
        }
        out.push(ProcInfo {
            pid,
            state: rest[0].chars().next().unwrap_or('?'),
            ppid: rest[1].parse().unwrap_or(0),
            pgrp: rest[2].parse().unwrap_or(0),
            comm,
        });
    }
    out
}

/// Live (not zombie) processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<ProcInfo> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == pid && p.state != 'Z')
        .collect()
}

/// Live (not zombie) members of process group `pgrp`.
pub fn group_members(pgrp: u32) -> Vec<ProcInfo> {
    processes()
        .into_iter()
        .filter(|p| p.pgrp == pgrp && p.state != 'Z')
        .collect()
}

/// Poll `f` until it returns `Some`, at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}
