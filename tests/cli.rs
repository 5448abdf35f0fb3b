//! The real binary: commands, exit codes, config path / .env / listen precedence (docs/cli.md).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::config::Config;
use crate::support::wait::{self, LogLines};

const EXE: &str = env!("CARGO_BIN_EXE_aiproxy");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aiproxy-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(dir: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(EXE)
        .args(args)
        .current_dir(dir)
        .env_remove("CONFIG_PATH")
        .env_remove("AIPROXY_LISTEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_help_and_usage_errors() {
    let d = tmpdir("version");
    let (code, out, _) = run(&d, &["--version"], &[]);
    assert_eq!(
        (code, out.trim()),
        (0, concat!("aiproxy ", env!("CARGO_PKG_VERSION")))
    );
    let (code, out, _) = run(&d, &["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("aiproxy check") && out.contains("demo-mcp"));
    let (code, _, err) = run(&d, &["serve", "--bogus"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--bogus"));
}

#[test]
fn check_uses_the_demo_config_without_a_file_and_lists_every_problem() {
    let d = tmpdir("check");
    let (code, out, _) = run(&d, &["check"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("embedded demo config"), "{out}");

    std::fs::write(
        d.join("config.yaml"),
        "backends:\n  b: {kind: mock}\nassistants:\n  - name: a\n    backend: nope\n    temprature: 1\n",
    )
    .unwrap();
    let (code, out, err) = run(&d, &["check"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("assistants[0].temprature: unknown field"),
        "{all}"
    );
    assert!(all.contains("assistants[0].backend"), "{all}");

    let (code, _, err) = run(&d, &["check", "--config", "missing.yaml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.yaml"), "{err}");
    let (code, _, _) = run(&d, &["check"], &[("CONFIG_PATH", "also-missing.yaml")]);
    assert_eq!(
        code, 2,
        "an explicitly named file that is missing is an error"
    );
}

#[test]
fn env_file_feeds_the_config_and_real_environment_wins() {
    let d = tmpdir("envfile");
    std::fs::write(
        d.join("config.yaml"),
        "backends:\n  b: {kind: mock}\nassistants:\n  - {name: '${NAME_A}', backend: b}\n  - {name: '${NAME_B}', backend: b}\n",
    )
    .unwrap();
    std::fs::write(d.join(".env"), "NAME_A=from-dotenv\nNAME_B=from-dotenv-b\n").unwrap();
    std::fs::write(d.join("other.env"), "NAME_A=from-other\nNAME_B=other-b\n").unwrap();
    let (code, out, err) = run(&d, &["check", "--connect"], &[("NAME_B", "from-env")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("from-dotenv") && out.contains("from-env"),
        "{out}"
    );
    let (code, out, _) = run(&d, &["check", "--connect", "--env-file", "other.env"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("from-other") && out.contains("other-b"),
        "{out}"
    );
    let (code, _, err) = run(&d, &["check", "--env-file", "nope.env"], &[]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn serve_listens_where_told_and_stops_on_sigterm() {
    let d = tmpdir("serve");
    let port = crate::support::peers::free_port();
    let mut child = Command::new(EXE)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&d)
        .env("AIPROXY_LISTEN", "127.0.0.1:1") // the flag wins
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = LogLines::follow(child.stderr.take().unwrap());
    log.wait_for("listening on", Duration::from_secs(10));
    let body = ureq::get(&format!("http://127.0.0.1:{port}/health"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(body, r#"{"status":"ok"}"#);
    // SAFETY: kill(2) takes no pointers; the pid is a process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait::for_some(Duration::from_secs(10), "exit on SIGTERM", || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
}

/// Start `serve` on a free port in `dir`; returns the child, the port once it listens, and its
/// log lines (stderr).
fn start_serve(dir: &PathBuf) -> (std::process::Child, u16, LogLines) {
    let port = crate::support::peers::free_port();
    let mut child = Command::new(EXE)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = LogLines::follow(child.stderr.take().unwrap());
    log.wait_for("listening on", Duration::from_secs(10));
    (child, port, log)
}

fn model_ids(port: u16) -> Vec<String> {
    let body = ureq::get(&format!("http://127.0.0.1:{port}/v1/models"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sighup_reloads_the_config_file_and_refuses_a_broken_one() {
    let d = tmpdir("sighup");
    let cfg = |name: &str| {
        Config::new()
            .mock("b")
            .assistant(serde_json::json!({"name": name, "backend": "b"}))
            .yaml()
    };
    std::fs::write(d.join("config.yaml"), cfg("first")).unwrap();
    let (mut child, port, mut log) = start_serve(&d);
    assert_eq!(model_ids(port), ["first"]);
    // SAFETY: kill(2) takes no pointers; the pid is a process this test started.
    let hup = |child: &std::process::Child| unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    };
    std::fs::write(
        d.join("config.yaml"),
        "assistants:\n  - {name: broken, backend: nope}\n",
    )
    .unwrap();
    hup(&child);
    // The refusal is an event in the log: only after it does the check below test anything.
    let refused = log.wait_for("SIGHUP: reload", Duration::from_secs(10));
    assert!(refused.contains("reload refused"), "{refused}");
    assert_eq!(
        model_ids(port),
        ["first"],
        "a broken file is refused; the running config stays"
    );
    std::fs::write(d.join("config.yaml"), cfg("second")).unwrap();
    hup(&child);
    let done = log.wait_for("SIGHUP: ", Duration::from_secs(10));
    assert!(done.contains("config reloaded"), "{done}");
    assert_eq!(model_ids(port), ["second"], "SIGHUP did not reload");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The README's admin examples on the embedded demo (no config file), on the admin port; the
/// main port refuses them without ADMIN_API_KEY.
#[test]
fn demo_admin_examples_work_on_the_admin_port() {
    use crate::support::gateway::{admin_request, request};
    let d = tmpdir("demo-admin");
    let port = crate::support::peers::free_port();
    let admin_port = crate::support::peers::free_port();
    let mut child = Command::new(EXE)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&d)
        .env("AIPROXY_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env_remove("ADMIN_API_KEY")
        .env_remove("CONFIG_PATH")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = LogLines::follow(child.stderr.take().unwrap());
    let line = log.wait_for("admin API and /metrics on http://", Duration::from_secs(10));
    assert!(line.contains(&format!("127.0.0.1:{admin_port}")), "{line}");
    let main: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let json = [("Content-Type", "application/json")];

    let r = admin_request(admin, "GET", "/admin/mcp/demo/tools", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"add\""), "{}", r.text());
    let body = br#"{"backend": "mock", "mcp_servers": ["demo"], "system_prompt": "You are a coding assistant."}"#;
    let r = admin_request(admin, "PUT", "/admin/assistants/coder", &json, body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        request(main, "GET", "/v1/models/coder", &[], b"").status,
        200
    );
    let r = admin_request(admin, "DELETE", "/admin/assistants/coder", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // The demo has no file to reload: refused with the reason, the running config stays.
    let r = admin_request(admin, "POST", "/admin/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        admin_request(admin, "GET", "/metrics", &[], b"").status,
        200
    );
    // Not on the main port.
    for (method, path) in [("GET", "/admin/mcp/demo/tools"), ("GET", "/metrics")] {
        assert_eq!(request(main, method, path, &[], b"").status, 401, "{path}");
    }
    let r = request(main, "PUT", "/admin/assistants/coder", &json, body);
    assert_eq!(r.status, 401);

    // SAFETY: kill(2) takes no pointers; the pid is a process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    wait::for_some(Duration::from_secs(10), "exit on SIGTERM", || {
        child.try_wait().unwrap()
    });
}
