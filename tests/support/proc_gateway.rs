//! aiproxy as a child process (the built binary), for tests that need the gateway's own
//! memory and thread figures from `/proc` and its own file-descriptor table: started from YAML
//! on a free loopback port, ready once `GET /health` answers, stopped with SIGTERM (then
//! SIGKILL) when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::gateway::request;

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct ProcGateway {
    child: Child,
    pub addr: SocketAddr,
    config: PathBuf,
}

/// Resident memory and thread count of a process.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub rss_kb: u64,
    pub threads: u64,
}

impl ProcGateway {
    /// `${AIPROXY_EXE}` in the YAML is replaced by the built binary's path.
    pub fn start(yaml: &str) -> ProcGateway {
        ProcGateway::start_with_env(yaml, &[])
    }

    /// [`ProcGateway::start`] with extra environment variables for the process.
    pub fn start_with_env(yaml: &str, vars: &[(&str, &str)]) -> ProcGateway {
        let exe = env!("CARGO_BIN_EXE_aiproxy");
        let config = std::env::temp_dir().join(format!(
            "aiproxy-proc-{}-{}.yaml",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&config, yaml.replace("${AIPROXY_EXE}", exe)).unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--listen")
            .arg(addr.to_string())
            .args(["--admin-listen", "off"])
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let gw = ProcGateway {
            child,
            addr,
            config,
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(addr).is_ok()
                && request(addr, "GET", "/health", &[], b"").status == 200
            {
                return gw;
            }
            assert!(Instant::now() < end, "aiproxy did not become ready");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn mem(&self) -> Mem {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        Mem {
            rss_kb: field("VmRSS:"),
            threads: field("Threads:"),
        }
    }

    /// Still running (not exited, not a zombie).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for ProcGateway {
    fn drop(&mut self) {
        // SIGTERM lets it stop its MCP children; SIGKILL if it does not exit in time.
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.config);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
