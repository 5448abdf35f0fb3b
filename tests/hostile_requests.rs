//! Hostile input that costs memory or CPU out of proportion to its size (issue 11 #4, #7, #11),
//! against the real binary where the figure that matters is the process's own (`/proc`).
//!
//! Memory: a 4 MiB body must not grow the gateway's peak RSS (`VmHWM`) by more than 32 MiB,
//! whatever its shape. Each case runs in a fresh gateway process so peaks do not hide each
//! other; the demo MCP server is warmed first (its start is not what we measure).

use serde_json::json;

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
    let gw = ProcGateway::start(aiproxy::config::DEMO_CONFIG_YAML);
    let warm =
        json!({"model": "demo", "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
    assert_eq!(post(&gw, warm.to_string().as_bytes()).status, 200);
    let before = peak_rss_kb(gw.pid());
    let resp = post(&gw, body.as_bytes());
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
