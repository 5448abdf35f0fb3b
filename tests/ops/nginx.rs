//! Scale-out: two aiproxy replicas (the real binary) behind a real nginx running the shipped
//! `deploy/nginx.conf` (ports rewritten) on loopback. Requests spread over both replicas, a
//! stream passes through unbuffered, request ids flow end to end, a config change reaches
//! both replicas (SIGHUP on one, `POST /admin/reload` on the other) as seen through nginx,
//! and with one replica stopped nginx keeps serving from the other.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::proc::{Proc, TempDir, serve, serve_cmd, wait_for};
use crate::support::gateway::{Response, SseClient, request};

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

/// The shipped site config with its ports replaced; fails if the file no longer has them.
fn site_config(port: u16, replicas: [SocketAddr; 2]) -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"))
            .unwrap();
    let mut text = shipped.clone();
    for (from, to) in [
        ("listen 8000;", format!("listen 127.0.0.1:{port};")),
        ("server 127.0.0.1:8001 ", format!("server {} ", replicas[0])),
        ("server 127.0.0.1:8002 ", format!("server {} ", replicas[1])),
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
    let (r2, a2) = serve(
        serve_cmd(dir.path(), &["--config", cfg]),
        Duration::from_secs(20),
    );
    let mut replicas = [r1, r2];
    let port = free_port();
    let mut nginx = start_nginx(
        &bin,
        &dir.path().join("nginx"),
        &site_config(port, [a1, a2]),
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
    let r = request(a2, "POST", "/admin/reload", &[], b"");
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

    // The admin API stays local through nginx too (and reaches one replica only).
    assert_eq!(request(lb, "GET", "/metrics", &[], b"").status, 200);

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
