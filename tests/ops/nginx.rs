//! Scale-out: two aiproxy replicas (the real binary) behind a real nginx running the shipped
//! `deploy/nginx.conf` (ports rewritten) on loopback. Requests spread over both replicas, a
//! stream passes through unbuffered, request ids flow end to end, a config change reaches
//! both replicas (SIGHUP on one, `POST /admin/reload` on the other) as seen through nginx,
//! and with one replica stopped nginx keeps serving from the other.
//!
//! Also the admin API through a proxy on the same host (every request a loopback peer): a
//! plain `proxy_pass` in front of the gateway does not open it (401 without the key, 400 for
//! encoded-slash and dot-segment paths, no command run), and the shipped config answers 404 to
//! every admin and `/metrics` path however it is encoded and keeps `?apikey=` out of its log.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::proc::{Proc, TempDir, serve, serve_cmd, serve_with_admin, wait_for};
use crate::support::gateway::{Response, SseClient, admin_request, request};

const V1: &str = r#"
mcp_servers:
  demo: {command: "${AIPROXY_EXE}", args: [demo-mcp]}
backends:
  mock: {kind: mock}
assistants:
  - {name: alpha, backend: mock, model: mock, mcp_servers: [demo]}
"#;

const V2: &str = r#"
mcp_servers:
  demo: {command: "${AIPROXY_EXE}", args: [demo-mcp]}
backends:
  mock: {kind: mock}
assistants:
  - {name: alpha, backend: mock, model: mock, mcp_servers: [demo]}
  - {name: beta, backend: mock, model: mock, mcp_servers: [demo]}
"#;

fn nginx_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "CI needs nginx (apt-get install nginx-light; .ci/run installs it)"
        );
        eprintln!("SKIPPED ops::nginx: nginx is not installed (apt-get install nginx-light)");
    }
    found
}

use crate::support::peers::free_port;

/// The shipped site config with its ports and log path replaced; fails if the file no longer
/// has them.
fn site_config(port: u16, replicas: [SocketAddr; 2], log_dir: &Path) -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"))
            .unwrap();
    let mut text = shipped.clone();
    for (from, to) in [
        ("listen 8000;", format!("listen 127.0.0.1:{port};")),
        ("server 127.0.0.1:8081 ", format!("server {} ", replicas[0])),
        ("server 127.0.0.1:8082 ", format!("server {} ", replicas[1])),
        (
            "/var/log/nginx/aiproxy-access.log",
            log_dir.join("aiproxy-access.log").display().to_string(),
        ),
    ] {
        assert!(text.contains(from), "deploy/nginx.conf has no '{from}'");
        text = text.replace(from, &to);
    }
    text
}

fn start_nginx(bin: &Path, dir: &Path, site: &str) -> Proc {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("aiproxy.conf"), site).unwrap();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp/body;\n\
         proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n\
         uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
         include {d}/aiproxy.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    Proc::spawn(cmd)
}

fn get(addr: SocketAddr, path: &str, id: &str) -> Response {
    request(addr, "GET", path, &[("X-Request-Id", id)], b"")
}

fn chat(addr: SocketAddr, model: &str, id: &str) -> Response {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
    request(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json"), ("X-Request-Id", id)],
        body.to_string().as_bytes(),
    )
}

fn model_ids(r: &Response) -> Vec<String> {
    r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect()
}

/// Which replicas logged each request id (waits until every id was logged somewhere).
fn served_by(replicas: &mut [Proc; 2], ids: &[String]) -> Vec<Vec<usize>> {
    wait_for(Duration::from_secs(10), "access lines", || {
        for r in replicas.iter_mut() {
            r.drain();
        }
        let seen: Vec<Vec<usize>> = ids
            .iter()
            .map(|id| {
                (0..2)
                    .filter(|&i| {
                        replicas[i]
                            .stderr
                            .iter()
                            .any(|l| l.contains(&format!("{id} ")) && l.contains(" status="))
                    })
                    .collect()
            })
            .collect();
        seen.iter().all(|s| !s.is_empty()).then_some(seen)
    })
}

fn both_served(replicas: &mut [Proc; 2], ids: &[String]) {
    let seen = served_by(replicas, ids);
    for i in 0..2 {
        assert!(
            seen.iter().any(|s| s.contains(&i)),
            "replica {i} served none of {ids:?}: {seen:?}"
        );
    }
}

#[test]
fn two_replicas_behind_nginx_stream_and_reload() {
    let Some(bin) = nginx_binary() else {
        return;
    };
    let dir = TempDir::new("nginx");
    let config = dir.write("config.yaml", V1);
    let cfg = config.to_str().unwrap();
    let (r1, a1) = serve(
        serve_cmd(dir.path(), &["--config", cfg]),
        Duration::from_secs(20),
    );
    let (r2, a2, admin2) = serve_with_admin(
        serve_cmd(dir.path(), &["--config", cfg]),
        Duration::from_secs(20),
    );
    let mut replicas = [r1, r2];
    let port = free_port();
    let mut nginx = start_nginx(
        &bin,
        &dir.path().join("nginx"),
        &site_config(port, [a1, a2], dir.path()),
    );
    let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(Duration::from_secs(10), "nginx to listen", || {
        TcpStream::connect(lb).ok()
    });

    // Requests spread over both replicas; client request ids pass through both ways.
    let ids: Vec<String> = (0..6).map(|i| format!("lb-chat-{i}")).collect();
    for id in &ids {
        let r = chat(lb, "alpha", id);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("X-Request-Id"), Some(id.as_str()));
        assert!(
            r.json()["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|c| c.contains("2 + 3 = 5"))
        );
    }
    both_served(&mut replicas, &ids);
    // Without a client id, nginx's own id (32 hex digits) is used and returned.
    let r = request(lb, "GET", "/health", &[], b"");
    assert_eq!(r.status, 200);
    let nginx_id = r.header("X-Request-Id").unwrap_or("");
    assert!(
        nginx_id.len() == 32 && nginx_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{nginx_id:?}"
    );

    // A stream passes through unbuffered: the first chunk arrives long before the end.
    let body = json!({"model": "alpha", "stream": true,
        "messages": [{"role": "user", "content": "sleep 1200"}]});
    let mut s = SseClient::open(lb, &body);
    assert_eq!(s.status, 200);
    let mut blocks: Vec<(String, Duration)> = Vec::new();
    while let Some(b) = s.next_block() {
        blocks.push(b);
    }
    let first = blocks.first().map(|b| b.1).unwrap();
    let (last, end) = blocks.last().cloned().unwrap();
    assert_eq!(last, "data: [DONE]", "{blocks:?}");
    assert!(
        end - first >= Duration::from_millis(1000),
        "chunks were held back: {blocks:?}"
    );
    assert!(
        blocks.iter().any(|(b, t)| b.starts_with(':') && *t < end),
        "the tool-round comment came through before the end: {blocks:?}"
    );

    // Reload: change the file, SIGHUP one replica, POST /admin/reload to the other.
    for id in ["lb-models-before-0", "lb-models-before-1"] {
        assert_eq!(model_ids(&get(lb, "/v1/models", id)), ["alpha"]);
    }
    std::fs::write(&config, V2).unwrap();
    replicas[0].signal(libc::SIGHUP);
    replicas[0].wait_line(Duration::from_secs(10), |l| {
        l.contains("SIGHUP: config reloaded")
    });
    let r = admin_request(admin2, "POST", "/admin/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let ids: Vec<String> = (0..6).map(|i| format!("lb-models-after-{i}")).collect();
    for id in &ids {
        assert_eq!(model_ids(&get(lb, "/v1/models", id)), ["alpha", "beta"]);
    }
    both_served(&mut replicas, &ids);
    let ids: Vec<String> = (0..4).map(|i| format!("lb-beta-{i}")).collect();
    for id in &ids {
        let r = chat(lb, "beta", id);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["model"], "beta");
    }
    both_served(&mut replicas, &ids);

    // The shipped config never proxies the admin API or /metrics.
    for path in ["/metrics", "/admin/config", "/admin"] {
        assert_eq!(request(lb, "GET", path, &[], b"").status, 404, "{path}");
    }

    // One replica stops (rolling restart): nginx keeps answering from the other.
    replicas[0].signal(libc::SIGTERM);
    assert_eq!(
        replicas[0].wait_exit(Duration::from_secs(20)).code(),
        Some(0)
    );
    let t = Instant::now();
    for i in 0..4 {
        let r = chat(lb, "beta", &format!("lb-after-stop-{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    replicas[1].signal(libc::SIGTERM);
    assert_eq!(
        replicas[1].wait_exit(Duration::from_secs(20)).code(),
        Some(0)
    );
    nginx.signal(libc::SIGQUIT);
    nginx.wait_exit(Duration::from_secs(10));
}

/// The gateway behind nginx on `port`, nginx running `site`; waits until nginx listens.
fn behind_nginx(bin: &Path, dir: &TempDir, site: &str, port: u16) -> (Proc, SocketAddr) {
    let nginx = start_nginx(bin, &dir.path().join("nginx"), site);
    let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(Duration::from_secs(10), "nginx to listen", || {
        TcpStream::connect(lb).ok()
    });
    (nginx, lb)
}

/// A stdio MCP server whose start would leave `marker` behind.
fn shell_body(marker: &Path) -> Vec<u8> {
    json!({"command": "/bin/sh", "args": ["-c", format!("touch {}", marker.display())]})
        .to_string()
        .into_bytes()
}

/// Paths that normalise to an admin path (or escape it) in a proxy but not in aiproxy.
const SMUGGLED: &[&str] = &[
    "/admin/mcp/%2F..%2F..%2Fx",
    "/admin/mcp/..%2Fx",
    "/admin/mcp/%5C..%5Cx",
    "/admin/%2e%2e/metrics",
    "/admin/./config",
];

#[test]
fn a_plain_proxy_pass_does_not_open_the_admin_api() {
    let Some(bin) = nginx_binary() else {
        return;
    };
    let dir = TempDir::new("nginx-plain");
    let config = dir.write("config.yaml", V1);
    let (mut gw, addr) = serve(
        serve_cmd(dir.path(), &["--config", config.to_str().unwrap()]),
        Duration::from_secs(20),
    );
    let port = free_port();
    let site = format!(
        "server {{\n  listen 127.0.0.1:{port};\n  location / {{\n    proxy_pass http://{addr};\n  }}\n}}\n"
    );
    let (mut nginx, lb) = behind_nginx(&bin, &dir, &site, port);
    let marker = dir.path().join("pwned");

    // Every request reaches aiproxy from loopback; without ADMIN_API_KEY that opens nothing.
    assert_eq!(request(lb, "GET", "/v1/models", &[], b"").status, 200);
    for path in ["/metrics", "/admin/config", "/admin/mcp"] {
        let r = request(lb, "GET", path, &[], b"");
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], "authentication_error");
    }
    let put = request(lb, "PUT", "/admin/mcp/x", &[], &shell_body(&marker));
    assert_eq!(put.status, 401, "{}", put.text());
    for path in SMUGGLED {
        let r = request(lb, "PUT", path, &[], &shell_body(&marker));
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_path", "{path}");
    }
    // Straight at the gateway (no proxy): the same answers (nginx refuses `%00` itself).
    for path in SMUGGLED
        .iter()
        .chain(&["/admin/mcp/x%00", "/admin/mcp/%00"])
    {
        assert_eq!(request(addr, "GET", path, &[], b"").status, 400, "{path}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "a command ran");

    nginx.signal(libc::SIGQUIT);
    nginx.wait_exit(Duration::from_secs(10));
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn the_shipped_nginx_config_hides_admin_and_keeps_keys_out_of_its_log() {
    let Some(bin) = nginx_binary() else {
        return;
    };
    let dir = TempDir::new("nginx-shipped");
    let config = dir.write("config.yaml", V1);
    let (mut gw, addr, admin) = serve_with_admin(
        serve_cmd(dir.path(), &["--config", config.to_str().unwrap()]),
        Duration::from_secs(20),
    );
    let port = free_port();
    let (mut nginx, lb) = behind_nginx(
        &bin,
        &dir,
        &site_config(port, [addr, addr], dir.path()),
        port,
    );
    let marker = dir.path().join("pwned");
    let mut paths: Vec<&str> = vec![
        "/metrics",
        "/admin",
        "/admin/config",
        "/%61dmin/config",
        "//admin/config",
        "/ADMIN/config",
        "/v1/%2e%2e/admin/config",
        "/v1/../metrics",
    ];
    paths.extend_from_slice(SMUGGLED);
    for path in paths {
        let r = request(lb, "PUT", path, &[], &shell_body(&marker));
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        let r = request(lb, "GET", path, &[], b"");
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    assert!(!marker.exists(), "a command ran");
    // The admin listener is still there for local clients.
    assert_eq!(
        admin_request(admin, "GET", "/admin/config", &[], b"").status,
        200
    );

    // A key in the query string does not reach nginx's access log.
    let r = request(lb, "GET", "/v1/models?apikey=sk-query-secret-123", &[], b"");
    assert_eq!(r.status, 200);
    nginx.signal(libc::SIGQUIT);
    nginx.wait_exit(Duration::from_secs(10));
    let log = std::fs::read_to_string(dir.path().join("aiproxy-access.log")).unwrap();
    assert!(log.contains("GET /v1/models "), "{log}");
    assert!(!log.contains("sk-query-secret-123"), "{log}");
    assert!(!log.contains("apikey"), "{log}");
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
