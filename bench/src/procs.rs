//! Child processes of a benchmark run: the fake upstream and aiproxy itself (started, probed
//! for readiness, measured through `/proc`, stopped with SIGTERM then SIGKILL); CPU time of a
//! process tree; how busy the machine is; optional CPU pinning (`--pin`: servers on CPU 0,
//! the load generator on CPU 1, through `taskset`).
//!
//! Thread model: called from the driver thread; a child's stdout is read on the driver thread
//! only until its ready line; waits poll with a deadline.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
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

static PINNED: AtomicBool = AtomicBool::new(false);

/// Pin this process's main thread (and so every load thread it spawns later) to CPU 1, and
/// every server started afterwards to CPU 0. Needs 2+ CPUs and `taskset`; says why not
/// otherwise.
pub fn pin() -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return Err(format!("{cpus} CPU available"));
    }
    let ok = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?
        .success();
    if !ok {
        return Err("taskset -p -c 1 failed".into());
    }
    PINNED.store(true, Ordering::Relaxed);
    Ok(())
}

pub fn pinned() -> bool {
    PINNED.load(Ordering::Relaxed)
}

/// A command for a server process: under `taskset -c 0` when pinned (taskset execs the
/// program, so the pid is the server's).
pub fn server_command(exe: &Path) -> Command {
    if pinned() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

/// Start `aiproxy-bench upstream` and wait for its `listening <addr>` line.
pub fn upstream(self_exe: &Path, workers: usize) -> io::Result<Proc> {
    upstream_at_nice(self_exe, workers, 0)
}

/// [`upstream`] with every thread of it `nice` steps below normal priority.
pub fn upstream_at_nice(self_exe: &Path, workers: usize, nice: i32) -> io::Result<Proc> {
    let mut child = server_command(self_exe)
        .args(["upstream", "--listen", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        .args(["--nice", &nice.to_string()])
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
pub fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Start aiproxy on `config` and time it until `GET /health` answers 200.
pub fn aiproxy(exe: &Path, config: &Path, log: &Path) -> io::Result<Proc> {
    let addr = free_addr()?;
    let log = std::fs::File::create(log)?;
    let started = Instant::now();
    let child = server_command(exe)
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

/// `pid` and its direct children: the processes whose CPU counts as the server's (aiproxy and
/// its MCP servers; the nginx master and its workers).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut v = vec![pid];
    v.extend(children(pid));
    v
}

fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime (clock ticks) from a `/proc/<pid>/stat` line: the 14th and 15th fields,
/// counted after the `(comm)` that may hold spaces.
fn stat_ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Cumulative CPU time (user + system, all threads, ms) of the processes in `pids`.
pub fn cpu_ms(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .map(|p| {
            stat_ticks(&std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
        })
        .sum();
    ticks as f64 * 1000.0 / clk_tck()
}

/// How busy the machine is: the load averages and the number of runnable threads (state R)
/// that are not this harness's own.
pub fn busy() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let me = std::process::id().to_string();
    let mut runnable = 0;
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        for t in std::fs::read_dir(p.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('R'))
            {
                runnable += 1;
            }
        }
    }
    format!("load {}; {runnable} other runnable", load.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_reads_utime_and_stime_after_the_comm() {
        let line = "42 (a) b c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 1 2 3";
        assert_eq!(stat_ticks(line), 12);
        assert_eq!(stat_ticks("garbage"), 0);
        // This process has run for a while: its own figure is readable.
        assert!(cpu_ms(&[std::process::id()]) >= 0.0);
        assert!(busy().contains("other runnable"));
    }
}
