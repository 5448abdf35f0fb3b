//! Hostile input that costs memory or CPU out of proportion to its size (issue 11 #4, #7, #11),
//! against the real binary where the figure that matters is the process's own (`/proc`).
//!
//! Memory: a 4 MiB body must not grow the gateway's peak RSS (`VmHWM`) by more than 32 MiB,
//! whatever its shape. Each case runs in a fresh gateway process so peaks do not hide each
//! other; the demo MCP server is warmed first (its start is not what we measure).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{Response, request};
use crate::support::proc_gateway::ProcGateway;

const MIB: usize = 1 << 20;
/// A body just under the default `max_body_bytes` (4 MiB).
const BODY: usize = 4 * MIB - 256;
/// Target of issue 11: peak RSS growth for one 4 MiB body.
const MAX_GROWTH_KB: u64 = 32 * 1024;

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn post(gw: &ProcGateway, body: &[u8]) -> Response {
    request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        body,
    )
}

/// `[0,0,…,0]` of exactly `len` bytes (`len` odd).
fn zeros(len: usize) -> String {
    format!("[{}0]", "0,".repeat((len - 3) / 2))
}

/// Peak RSS growth (KiB) of a fresh demo gateway answering `body`, and the response.
fn growth(body: &str) -> (u64, Response) {
    growth_at("/v1/chat/completions", body)
}

/// [`growth`] for a body posted to `path`.
fn growth_at(path: &str, body: &str) -> (u64, Response) {
    let gw = ProcGateway::start(aiproxy::demo::CONFIG_YAML);
    let warm =
        json!({"model": "demo", "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
    assert_eq!(post(&gw, warm.to_string().as_bytes()).status, 200);
    let before = peak_rss_kb(gw.pid());
    let resp = request(
        gw.addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let after = peak_rss_kb(gw.pid());
    (after - before, resp)
}

/// Before: +132 MiB (parsed into a `serde_json::Value` first, 32–96 bytes per `0,`).
#[test]
fn four_mib_array_in_a_pass_through_param_costs_little_memory() {
    let head = r#"{"model":"demo","messages":[{"role":"user","content":"hi"}],"x":"#;
    let body = format!("{head}{}}}", zeros((BODY - head.len() - 2) | 1));
    assert!(body.len() > 4 * MIB - 1024 && body.len() <= 4 * MIB);
    let (kb, resp) = growth(&body);
    eprintln!(
        "4 MiB [0,0,…] param: peak RSS +{kb} KiB, status {}",
        resp.status
    );
    assert!(kb <= MAX_GROWTH_KB, "peak RSS grew by {kb} KiB");
    // Refused before decoding: its decoded form would be ~100 MiB.
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "request_too_complex");
}

/// Same through the typed message content (`Content::Parts` is a `Vec<Value>`).
#[test]
fn four_mib_array_as_message_content_costs_little_memory() {
    let head = r#"{"model":"demo","messages":[{"role":"user","content":"#;
    let body = format!("{head}{}}}]}}", zeros((BODY - head.len() - 3) | 1));
    let (kb, resp) = growth(&body);
    eprintln!(
        "4 MiB [0,0,…] content: peak RSS +{kb} KiB, status {}",
        resp.status
    );
    assert!(kb <= MAX_GROWTH_KB, "peak RSS grew by {kb} KiB");
    assert_eq!(resp.status, 413, "{}", resp.text());
}

/// The Responses API decodes within the same limits (it used to parse into a `Value` and then
/// clone it into the typed request).
#[test]
fn four_mib_array_in_a_responses_input_costs_little_memory() {
    let head = r#"{"model":"demo","input":[{"role":"user","content":"hi"}],"metadata":"#;
    let body = format!("{head}{}}}", zeros((BODY - head.len() - 2) | 1));
    let (kb, resp) = growth_at("/v1/responses", &body);
    eprintln!(
        "4 MiB [0,0,…] in /v1/responses: peak RSS +{kb} KiB, status {}",
        resp.status
    );
    assert!(kb <= MAX_GROWTH_KB, "peak RSS grew by {kb} KiB");
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "request_too_complex");
}

/// 260,000 minimal messages: small on the wire, ~200 bytes each typed.
#[test]
fn many_tiny_messages_are_refused_before_decoding() {
    let one = r#"{"role":"user"},"#;
    let n = (BODY - 64) / one.len();
    let body = format!(
        r#"{{"model":"demo","messages":[{}{{"role":"user","content":"hi"}}]}}"#,
        one.repeat(n)
    );
    let (kb, resp) = growth(&body);
    eprintln!(
        "{n} tiny messages: peak RSS +{kb} KiB, status {}",
        resp.status
    );
    assert!(kb <= MAX_GROWTH_KB, "peak RSS grew by {kb} KiB");
    assert_eq!(resp.status, 413, "{}", resp.text());
}

/// A 4 MiB string is not amplified, and is answered: once in the history, once as the last
/// user message (which the demo's mock backend echoes back, so it is copied a few times more).
#[test]
fn four_mib_message_content_is_served_within_the_memory_bound() {
    let text = "a".repeat(BODY - 200);
    let history = json!({"model": "demo", "messages": [
        {"role": "user", "content": text},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "hi"}]});
    let (kb, resp) = growth(&history.to_string());
    eprintln!("4 MiB content in history: peak RSS +{kb} KiB");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(kb <= MAX_GROWTH_KB, "peak RSS grew by {kb} KiB");

    let last = json!({"model": "demo", "messages": [{"role": "user", "content": text}]});
    let (kb, resp) = growth(&last.to_string());
    eprintln!("4 MiB content echoed: peak RSS +{kb} KiB");
    assert_eq!(resp.status, 200);
    assert!(kb <= MAX_GROWTH_KB, "peak RSS grew by {kb} KiB");
}

// ------------------------------------------------------------------ tools from hostile peers

fn many_script() -> String {
    format!("{}/tests/support/mcp_many.py", env!("CARGO_MANIFEST_DIR"))
}

/// User + system CPU time of a process so far (all its threads).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `after_comm` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn chat(gw: &ProcGateway, text: &str) -> Response {
    let body = json!({"model": "a", "messages": [{"role": "user", "content": text}]});
    post(gw, body.to_string().as_bytes())
}

/// Before: naming was quadratic (4.7 s of CPU per chat with 40,000 tools) and every tool was
/// offered. Now at most `max_tools` (1,000) per server are offered, and of 200 calls in one
/// turn the first `max_tool_calls_per_turn` (128) run and the rest get a tool error.
#[test]
fn forty_thousand_tools_are_capped_and_cheap_and_calls_per_turn_are_capped() {
    let up = FakeOpenAi::start();
    up.set_default(Reply::text("done"));
    let gw = ProcGateway::start(&format!(
        r#"
mcp_servers:
  many:
    command: python3
    args: ["{}", many, "40000"]
    startup_timeout: 60s
backends:
  up: {{kind: openai, base_url: "{}"}}
assistants:
  - {{name: a, backend: up, model: m, mcp_servers: [many]}}
"#,
        many_script(),
        up.url()
    ));
    // Warm: starts the server and lists its tools once (not what we measure).
    let started = Instant::now();
    let warm = chat(&gw, "hi");
    eprintln!(
        "first chat (starts the server, lists 40,000 tools): {:?} wall",
        started.elapsed()
    );
    assert_eq!(warm.status, 200, "{}", warm.text());

    let cpu = cpu_time(gw.pid());
    let started = Instant::now();
    let resp = chat(&gw, "hi again");
    let (spent, took) = (cpu_time(gw.pid()) - cpu, started.elapsed());
    eprintln!("one chat with 40,000 listed tools: {spent:?} CPU, {took:?} wall");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let offered = up.last_request().unwrap().tool_names();
    assert_eq!(offered.len(), 1000, "only max_tools tools are offered");
    assert_eq!(offered[0], "many__t0");
    assert!(offered.iter().all(|n| n.starts_with("many__t")));
    assert!(
        spent < Duration::from_secs(2),
        "{spent:?} of CPU for one chat"
    );

    // 200 calls in one turn: 128 run, 72 answered with a tool error.
    let names: Vec<String> = (0..200).map(|i| format!("many__t{i}")).collect();
    let calls: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "{}")).collect();
    up.push(Reply::tool_calls(&calls));
    let before = up.completions().len();
    let cpu = cpu_time(gw.pid());
    let resp = chat(&gw, "call them all");
    let spent = cpu_time(gw.pid()) - cpu;
    eprintln!("200 tool calls in one turn: {spent:?} CPU");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let rounds = up.completions();
    assert_eq!(rounds.len(), before + 2, "a tool round, then the answer");
    let results: Vec<String> = rounds[before + 1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(results.len(), 200, "one result per call");
    let ran = results.iter().filter(|t| t.starts_with("ok t")).count();
    let refused: Vec<&String> = results
        .iter()
        .filter(|t| t.starts_with("[tool error]"))
        .collect();
    assert_eq!((ran, refused.len()), (128, 72));
    assert!(
        results[..128].iter().all(|t| t.starts_with("ok t")),
        "the first 128 ran"
    );
    assert!(
        refused[0].contains("max_tool_calls_per_turn"),
        "{}",
        refused[0]
    );
}

// ----------------------------------------------------- terminal escapes in `check --connect`

/// Before: a tool name or error text holding ESC [31m or CR reached the terminal raw.
#[test]
fn check_connect_escapes_control_characters_from_mcp_servers() {
    let script = many_script();
    let config = std::env::temp_dir().join(format!("aiproxy-ctl-{}.yaml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
mcp_servers:
  evil: {{command: python3, args: ["{script}", control]}}
  broken: {{command: python3, args: ["{script}", control-fail]}}
backends:
  m: {{kind: mock}}
assistants:
  - {{name: a, backend: m, mcp_servers: [evil]}}
  - {{name: b, backend: m, mcp_servers: [broken]}}
"#
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aiproxy"))
        .args(["check", "--connect", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&config);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "a server failed: {stdout}");
    assert!(
        !stdout.contains(['\x1b', '\r', '\x07']),
        "raw control characters: {stdout:?}"
    );
    assert!(
        stdout.contains(r"'evil\u{1b}[31mred\rX'"),
        "the tool's real name, escaped: {stdout}"
    );
    assert!(
        stdout.contains(r"listing \u{1b}[31mbroke\r here"),
        "the server's error, escaped: {stdout}"
    );
}
