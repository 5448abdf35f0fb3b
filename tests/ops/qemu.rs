//! The aarch64 static build (`make static-arm`, built by `make ci` before the tests) runs under
//! `qemu-aarch64-static`: `--version`, `check` (valid and invalid config, `--connect` spawning
//! its own demo MCP server through the emulator), and `serve` answering a demo chat completion
//! that makes a real MCP tool call, asked with curl. Under CI the binary must exist; a local
//! run without it skips with a note.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::proc::{Proc, TempDir, serve};

const QEMU: &str = "qemu-aarch64-static";
/// Emulated startup and the first MCP spawn are slow; generous bounds.
const SLOW: Duration = Duration::from_secs(60);

fn arm_binary() -> Option<PathBuf> {
    // <target>/debug/aiproxy → <target>/aarch64-unknown-linux-musl/release/aiproxy
    let target = PathBuf::from(env!("CARGO_BIN_EXE_aiproxy"))
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf())?;
    let bin = target.join("aarch64-unknown-linux-musl/release/aiproxy");
    let qemu = Command::new(QEMU).arg("--version").output().is_ok();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match (bin.exists(), qemu) {
        (true, true) => Some(bin),
        _ if in_ci => panic!(
            "CI needs {} (make static-arm) and {QEMU} (apt-get install qemu-user-static)",
            bin.display()
        ),
        _ => {
            eprintln!(
                "SKIPPED ops::qemu: needs {} (make static-arm) and {QEMU}",
                bin.display()
            );
            None
        }
    }
}

fn qemu(bin: &PathBuf, dir: &TempDir, args: &[&str]) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.arg(bin)
        .args(args)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("CONFIG_PATH")
        .env_remove("AIPROXY_LISTEN");
    cmd
}

fn run(cmd: Command) -> (Option<i32>, Proc) {
    let mut p = Proc::spawn(cmd);
    let status = p.wait_exit(SLOW);
    (status.code(), p)
}

#[test]
fn aarch64_static_binary_runs_under_qemu() {
    let Some(bin) = arm_binary() else {
        return;
    };
    let file = Command::new("file").arg(&bin).output().unwrap();
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("ARM aarch64") && file.contains("statically linked"),
        "{file}"
    );
    let dir = TempDir::new("qemu");

    let (code, p) = run(qemu(&bin, &dir, &["--version"]));
    assert_eq!(code, Some(0));
    assert_eq!(p.stdout, [format!("aiproxy {}", env!("CARGO_PKG_VERSION"))]);

    let good = dir.write(
        "good.yaml",
        "mcp_servers:\n  demo: {command: \"${AIPROXY_EXE}\", args: [demo-mcp]}\nbackends:\n  mock: {kind: mock}\nassistants:\n  - {name: calc, backend: mock, model: mock, mcp_servers: [demo]}\n",
    );
    let (code, p) = run(qemu(
        &bin,
        &dir,
        &["check", "--config", good.to_str().unwrap()],
    ));
    assert_eq!(code, Some(0), "{:?}", p.stderr);
    assert!(
        p.stdout[0].ends_with("ok (1 assistants, 1 backends, 1 MCP servers)"),
        "{:?}",
        p.stdout
    );

    let bad = dir.write(
        "bad.yaml",
        "backends:\n  mock: {kind: mock}\nassistants:\n  - {name: calc, backend: nope, model: mock, temprature: 1}\n",
    );
    let (code, p) = run(qemu(
        &bin,
        &dir,
        &["check", "--config", bad.to_str().unwrap()],
    ));
    assert_eq!(code, Some(2));
    let problems = p.stderr.join("\n");
    assert!(problems.contains("assistants[0].temprature"), "{problems}");

    // `--connect` spawns `${AIPROXY_EXE} demo-mcp`: the aarch64 binary again, which only
    // runs through the emulator.
    let (code, p) = run(qemu(
        &bin,
        &dir,
        &["check", "--connect", "--config", good.to_str().unwrap()],
    ));
    assert_eq!(code, Some(0), "{:?}\n{:?}", p.stdout, p.stderr);
    assert!(
        p.stdout
            .iter()
            .any(|l| l.trim_start().starts_with("demo__add ")),
        "{:?}",
        p.stdout
    );

    // serve on the embedded demo config (no config.yaml in the working directory).
    let (mut server, addr) = serve(
        qemu(&bin, &dir, &["serve", "--listen", "127.0.0.1:0"]),
        SLOW,
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"model":"demo","messages":[{"role":"user","content":"what is 2 + 3?"}]}"#,
        ])
        .arg(format!("http://{addr}/v1/chat/completions"))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert!(content.contains("2 + 3 = 5"), "{v}");
    assert_eq!(v["model"], "demo");

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(SLOW);
    assert_eq!(status.code(), Some(0), "{:?}", server.stderr);
    assert!(
        server
            .stderr
            .iter()
            .any(|l| l.contains("mcp[demo]: ready with 4 tools")),
        "the demo MCP server ran: {:?}",
        server.stderr
    );
}
