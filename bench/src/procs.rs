//! Child processes of a benchmark run: the fake upstream and aiproxy itself (started, probed
//! for readiness, measured through `/proc`, stopped with SIGTERM then SIGKILL).
//!
//! Thread model: called from the driver thread; a child's stdout is read on the driver thread
//! only until its ready line; waits poll with a deadline.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Conn, get};

/// A child killed on drop.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// From spawn to the first `GET /health` answered 200 (aiproxy only).
    pub ready_after: Duration,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop with SIGTERM (aiproxy drains and stops its MCP children), SIGKILL after 5 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `aiproxy-bench upstream` and wait for its `listening <addr>` line.
pub fn upstream(self_exe: &Path, workers: usize) -> io::Result<Proc> {
    let mut child = Command::new(self_exe)
        .args(["upstream", "--listen", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let started = Instant::now();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("upstream said {line:?}")))?;
    Ok(Proc {
        child,
        addr,
        ready_after: started.elapsed(),
    })
}

/// A free loopback port (bound and released: the tiny race is acceptable for a benchmark).
fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Start aiproxy on `config` and time it until `GET /health` answers 200.
pub fn aiproxy(exe: &Path, config: &Path, log: &Path) -> io::Result<Proc> {
    let addr = free_addr()?;
    let log = std::fs::File::create(log)?;
    let started = Instant::now();
    let child = Command::new(exe)
        .args(["serve", "--config"])
        .arg(config)
        .arg("--listen")
        .arg(addr.to_string())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let mut proc = Proc {
        child,
        addr,
        ready_after: Duration::ZERO,
    };
    let end = started + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = Conn::open(addr, Duration::from_secs(1))
            && let Ok(out) = c.exchange(&get("/health"), false)
            && out.status == 200
        {
            proc.ready_after = started.elapsed();
            return Ok(proc);
        }
        if Instant::now() > end {
            return Err(io::Error::other("aiproxy did not become ready in 10 s"));
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            return Err(io::Error::other(format!("aiproxy exited: {status}")));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// `/proc/<pid>/status` figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
}

pub fn mem(pid: u32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        threads: field("Threads:"),
    }
}

/// Pids of the direct children of `pid` (the MCP servers of aiproxy), whichever of its
/// threads spawned them.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
