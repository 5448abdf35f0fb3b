//! The official MCP conformance suite, client side (`@modelcontextprotocol/conformance` 0.1.16
//! and the 0.2.0-alpha.12 line for 2026-07-28), run with Node 22 against the
//! `mcp-conformance-client` binary, which drives aiproxy's own MCP client. Each scenario must
//! pass with every check SUCCESS (the suite fails a run on any WARNING too); the scenarios we do
//! not pass by design are listed with reasons in `tests/conformance/baseline-<version>.yml`.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::peers::{die_with_parent, node, peers_dir};

const STABLE: &str = "node_modules/@modelcontextprotocol/conformance/dist/index.js";
const NEXT: &str = "node_modules/conformance-next/dist/index.js";

/// Kills the suite's process group if a test fails or times out.
struct Suite(Option<Child>);

impl Drop for Suite {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SAFETY: kill(2) on the process group created below.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

struct Outcome {
    success: bool,
    checks: Vec<Value>,
    output: String,
    took: Duration,
}

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "aiproxy-conformance-{}-{}",
        std::process::id(),
        tag.replace('/', "_")
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Run `conformance client --scenario <scenario> <extra…>` with the suite at `suite`.
fn run(suite: &str, scenario: &str, extra: &[&str]) -> Outcome {
    let script = peers_dir().join(suite);
    assert!(
        script.exists(),
        "missing {} (run tests/peers/install.sh)",
        script.display()
    );
    let dir = out_dir(&format!("{scenario}{}", extra.join("")).replace(['/', '.'], "_"));
    let log = dir.join("suite.log");
    let t0 = Instant::now();
    let mut cmd = Command::new(node());
    die_with_parent(&mut cmd);
    let child = cmd
        .arg(&script)
        .args([
            "client",
            "--command",
            env!("CARGO_BIN_EXE_mcp-conformance-client"),
        ])
        .args(if scenario.is_empty() {
            vec![]
        } else {
            vec!["--scenario", scenario]
        })
        .arg("-o")
        .arg(&dir)
        .args(extra)
        .env("RUST_LOG", "aiproxy=debug")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut suite_guard = Suite(Some(child));
    let limit = Duration::from_secs(90);
    let status = loop {
        if let Some(s) = suite_guard.0.as_mut().unwrap().try_wait().unwrap() {
            suite_guard.0 = None;
            break s;
        }
        assert!(
            t0.elapsed() < limit,
            "conformance {scenario} did not finish in {limit:?}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let took = t0.elapsed();
    let output = fs::read_to_string(&log).unwrap_or_default();
    let checks = find_checks(&dir);
    Outcome {
        success: status.success(),
        checks,
        output,
        took,
    }
}

fn find_checks(dir: &Path) -> Vec<Value> {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path().join("checks.json");
        if p.exists() {
            return serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap();
        }
    }
    Vec::new()
}

/// The scenario passed: exit 0, and every judged check SUCCESS (INFO and SKIPPED are not
/// verdicts).
fn assert_passes(suite: &str, scenario: &str, extra: &[&str]) -> Outcome {
    let o = run(suite, scenario, extra);
    let verdicts: Vec<(&str, &str)> = o
        .checks
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
            )
        })
        .filter(|(_, s)| !matches!(*s, "INFO" | "SKIPPED"))
        .collect();
    eprintln!(
        "{scenario} {extra:?}: {verdicts:?} in {} ms",
        o.took.as_millis()
    );
    assert!(o.success, "{scenario} failed:\n{}", o.output);
    assert!(!verdicts.is_empty(), "{scenario}: no checks:\n{}", o.output);
    for (id, status) in &verdicts {
        assert_eq!(*status, "SUCCESS", "{scenario}: check {id}:\n{}", o.output);
    }
    o
}

#[test]
fn conformance_initialize() {
    assert_passes(STABLE, "initialize", &[]);
}

#[test]
fn conformance_tools_call() {
    assert_passes(STABLE, "tools_call", &[]);
}

#[test]
fn conformance_sse_retry() {
    let o = assert_passes(STABLE, "sse-retry", &[]);
    let timing = o
        .checks
        .iter()
        .find(|c| c["id"] == "client-sse-retry-timing")
        .expect("no timing check");
    let delay = timing["details"]["actualDelayMs"].as_u64().unwrap();
    eprintln!("sse-retry: reconnected {delay} ms after the stream closed (retry 500 ms)");
    assert!((450..=700).contains(&delay), "{delay}");
    let last_id = o
        .checks
        .iter()
        .find(|c| c["id"] == "client-sse-last-event-id")
        .unwrap();
    assert_eq!(last_id["status"], "SUCCESS");
}

#[test]
fn conformance_2026_tools_call() {
    let o = assert_passes(NEXT, "tools_call", &["--spec-version", "2026-07-28"]);
    assert!(
        o.checks.iter().any(|c| c["id"] == "wire-schema-valid"),
        "the 2026-07-28 run validates every message"
    );
}

#[test]
fn conformance_2026_request_metadata() {
    let o = assert_passes(NEXT, "request-metadata", &[]);
    let retry = o
        .checks
        .iter()
        .find(|c| c["id"] == "sep-2575-client-retry-supported-version")
        .unwrap();
    assert_eq!(
        retry["status"], "SUCCESS",
        "the -32022 rejection was retried"
    );
}

#[test]
fn conformance_2026_headers() {
    assert_passes(NEXT, "http-standard-headers", &[]);
    assert_passes(NEXT, "http-custom-headers", &[]);
    assert_passes(NEXT, "http-invalid-tool-headers", &[]);
}

#[test]
fn conformance_2026_schemas() {
    assert_passes(NEXT, "json-schema-ref-no-deref", &[]);
    assert_passes(NEXT, "json-schema-2020-12-preservation", &[]);
}

fn baseline(suite: &str) -> String {
    let file = if suite == STABLE {
        "baseline-0.1.16.yml"
    } else {
        "baseline-0.2.0-alpha.12.yml"
    };
    format!("{}/tests/conformance/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Every client scenario of both suite versions: all pass except exactly those in the
/// version's baseline (a baseline entry that passes is "stale" and fails the run as well).
#[test]
fn conformance_whole_suite_matches_the_baseline() {
    for suite in [STABLE, NEXT] {
        let o = run(
            suite,
            "",
            &["--suite", "all", "--expected-failures", &baseline(suite)],
        );
        let summary: Vec<&str> = o
            .output
            .lines()
            .filter(|l| l.contains('✓') || l.contains('✗') || l.contains("Total"))
            .collect();
        eprintln!("{suite}: {} ms\n{}", o.took.as_millis(), summary.join("\n"));
        assert!(o.success, "{suite}: baseline mismatch:\n{}", o.output);
    }
}
