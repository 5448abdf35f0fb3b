//! Prometheus metrics for `GET /metrics` (text exposition format 0.0.4): requests by route,
//! assistant and status with latency histograms, upstream calls and errors per backend, MCP
//! tool calls per tool and outcome with latency, agent-loop rounds, MCP server state, and the
//! HTTP server's in-flight and shed counts.
//!
//! Thread model: any thread records, nothing blocks. Every number is an atomic (`Relaxed`: each
//! counter is independent, and a scrape may see a request half-recorded, which Prometheus
//! tolerates). Label values come from the config (assistant, backend and tool names) and are
//! interned into fixed-capacity tables on first use; once a table is full, further values are
//! folded into `other`, so memory is bounded whatever the config or the clients do. Names the
//! client or the model makes up (unknown models, unknown tools) never become labels.
//! Fixed label sets are enums ([`Route`], [`Status`], [`UpstreamError`], [`ToolOutcome`]), each
//! with its values in exposition order (`ALL`), its label from a `match`, and its slot in the
//! counter tables from `index`. A request whose client went away is [`Status::ClientGone`],
//! counted under `status="499"` (a label kept stable for dashboards; no 499 is ever sent).
//!
//! Layout: this file is the registry ([`Metrics`]: its tables and the recording calls);
//! `labels` holds the fixed label sets, `table` the interned label tables and the atomic
//! counters and histograms, `render` writes the text exposition, and `ops` holds the
//! per-API-key, audit-log and reload series.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

mod labels;
mod ops;
mod render;
mod table;

pub use labels::{Route, Status, ToolOutcome, UpstreamError};
pub use ops::MAX_KEYS;
use table::{Histogram, Labels, counters, histograms};

/// The HTTP server's load at one moment, for the gauges of `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLoad {
    /// Requests admitted and not yet answered.
    pub in_flight: usize,
    pub open_connections: usize,
    /// Requests and connections refused with 503 at a limit so far.
    pub shed: u64,
}

/// Reads the HTTP server's current [`ServerLoad`].
pub type ServerLoadFn = Box<dyn Fn() -> ServerLoad + Send + Sync>;

/// Distinct assistants / backends / tools tracked; the rest are reported as `other`.
pub const MAX_ASSISTANTS: usize = 32;
pub const MAX_BACKENDS: usize = 16;
pub const MAX_TOOLS: usize = 128;
/// The label of everything beyond a table's capacity, and of names that are not ours.
pub const OTHER: &str = "other";

/// Seconds; covers a fast tool call up to a long tool loop.
const LATENCY_BOUNDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// LLM rounds per chat completion.
const ROUND_BOUNDS: [f64; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 16.0, 32.0];

/// The registry. One per gateway; cheap to share (`Arc`).
pub struct Metrics {
    started_at: u64,
    assistants: Labels,
    backends: Labels,
    tools: Labels,
    /// route × status
    http: Box<[AtomicU64]>,
    /// assistant × status (chat completions that named a configured assistant)
    chat: Box<[AtomicU64]>,
    chat_latency: Box<[Histogram]>,
    rounds: Box<[Histogram]>,
    upstream_calls: Box<[AtomicU64]>,
    /// backend × error kind
    upstream_errors: Box<[AtomicU64]>,
    upstream_latency: Box<[Histogram]>,
    /// tool × outcome
    tool_calls: Box<[AtomicU64]>,
    tool_latency: Box<[Histogram]>,
    http_stats: OnceLock<ServerLoadFn>,
    /// Per API key, the audit log, config reloads (`ops`).
    ops: ops::Ops,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let assistants = Labels::new(MAX_ASSISTANTS);
        let backends = Labels::new(MAX_BACKENDS);
        let tools = Labels::new(MAX_TOOLS);
        let (na, nb, nt) = (
            assistants.len_with_other(),
            backends.len_with_other(),
            tools.len_with_other(),
        );
        Metrics {
            started_at: crate::clock::unix_now(),
            http: counters(Route::ALL.len() * Status::N),
            chat: counters(na * Status::N),
            chat_latency: histograms(na, &LATENCY_BOUNDS),
            rounds: histograms(na, &ROUND_BOUNDS),
            upstream_calls: counters(nb),
            upstream_errors: counters(nb * UpstreamError::ALL.len()),
            upstream_latency: histograms(nb, &LATENCY_BOUNDS),
            tool_calls: counters(nt * ToolOutcome::ALL.len()),
            tool_latency: histograms(nt, &LATENCY_BOUNDS),
            assistants,
            backends,
            tools,
            http_stats: OnceLock::new(),
            ops: ops::Ops::new(),
        }
    }

    /// Where the HTTP server's load is read at scrape time (set once; the caller adapts the
    /// server's own counters, so this module does not depend on the server).
    pub fn attach_http(&self, load: ServerLoadFn) {
        let _ = self.http_stats.set(load);
    }

    /// One answered request (every route).
    pub fn request(&self, route: Route, status: Status) {
        self.http[route.index() * Status::N + status.index()].fetch_add(1, Relaxed);
    }

    /// One chat completion of a configured assistant, with its whole duration (streams
    /// included) and the LLM rounds it took (0 when it failed before the first answer).
    pub fn chat(&self, assistant: &str, status: Status, elapsed: Duration, rounds: u32) {
        let a = self.assistants.index(assistant);
        self.chat[a * Status::N + status.index()].fetch_add(1, Relaxed);
        self.chat_latency[a].observe(elapsed.as_secs_f64());
        if rounds > 0 {
            self.rounds[a].observe(f64::from(rounds));
        }
    }

    /// One call to an upstream LLM (one round), with its outcome.
    pub fn upstream(&self, backend: &str, elapsed: Duration, error: Option<UpstreamError>) {
        let b = self.backends.index(backend);
        self.upstream_calls[b].fetch_add(1, Relaxed);
        self.upstream_latency[b].observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.upstream_errors[b * UpstreamError::ALL.len() + kind.index()].fetch_add(1, Relaxed);
        }
    }

    /// One MCP tool call under its exposed name; `None` for a name the model made up.
    pub fn tool_call(&self, tool: Option<&str>, outcome: ToolOutcome, elapsed: Duration) {
        let t = tool.map_or(self.tools.slots.len(), |name| self.tools.index(name));
        self.tool_calls[t * ToolOutcome::ALL.len() + outcome.index()].fetch_add(1, Relaxed);
        self.tool_latency[t].observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::{ServerState, ServerStatus};

    /// The value on the first exposition line starting with `prefix`.
    pub(super) fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn a_departed_client_is_counted_as_499_and_a_sent_499_is_not() {
        let m = Metrics::new();
        m.request(Route::Chat, Status::ClientGone);
        m.chat("demo", Status::ClientGone, Duration::ZERO, 1);
        // No code path sends 499; were one to, it would not pass for a departed client.
        m.request(Route::Chat, Status::Http(499));
        let text = m.render(&[]);
        assert_eq!(
            line(
                &text,
                "aiproxy_http_requests_total{route=\"chat\",status=\"499\"}"
            ),
            Some("1")
        );
        assert_eq!(
            line(
                &text,
                "aiproxy_http_requests_total{route=\"chat\",status=\"other\"}"
            ),
            Some("1")
        );
        assert_eq!(
            line(
                &text,
                "aiproxy_requests_total{assistant=\"demo\",status=\"499\"}"
            ),
            Some("1")
        );
        assert_eq!(Status::ClientGone.to_string(), "client_gone");
        assert_eq!(Status::Http(502).to_string(), "502");
    }

    #[test]
    fn records_and_renders_every_family() {
        let m = Metrics::new();
        m.request(Route::Chat, Status::Http(200));
        m.request(Route::Chat, Status::Http(200));
        m.request(Route::Health, Status::Http(200));
        m.request(Route::Other, Status::Http(418));
        m.chat("demo", Status::Http(200), Duration::from_millis(30), 2);
        m.chat(
            "we\"ird\\name",
            Status::Http(502),
            Duration::from_millis(5),
            1,
        );
        m.upstream("mock", Duration::from_millis(3), None);
        m.upstream(
            "mock",
            Duration::from_millis(3),
            Some(UpstreamError::RateLimited),
        );
        m.tool_call(Some("demo__add"), ToolOutcome::Ok, Duration::from_millis(2));
        m.tool_call(None, ToolOutcome::Invalid, Duration::ZERO);
        let status = ServerStatus {
            state: ServerState::Ready,
            last_error: None,
            restarts: 2,
            tool_count: Some(4),
            pid: None,
            protocol_version: None,
        };
        let text = m.render(&[("demo".into(), status)]);
        let get = |p: &str| line(&text, p).unwrap_or_else(|| panic!("no {p} in\n{text}"));
        assert_eq!(
            get("aiproxy_http_requests_total{route=\"chat\",status=\"200\"}"),
            "2"
        );
        assert_eq!(
            get("aiproxy_http_requests_total{route=\"other\",status=\"other\"}"),
            "1"
        );
        assert_eq!(
            get("aiproxy_requests_total{assistant=\"demo\",status=\"200\"}"),
            "1"
        );
        assert_eq!(
            get("aiproxy_requests_total{assistant=\"we\\\"ird\\\\name\",status=\"502\"}"),
            "1"
        );
        assert_eq!(
            get("aiproxy_loop_iterations_bucket{assistant=\"demo\",le=\"2\"}"),
            "1"
        );
        assert_eq!(
            get("aiproxy_request_duration_seconds_count{assistant=\"demo\"}"),
            "1"
        );
        assert_eq!(
            get("aiproxy_upstream_requests_total{backend=\"mock\"}"),
            "2"
        );
        assert_eq!(
            get("aiproxy_upstream_errors_total{backend=\"mock\",kind=\"rate_limited\"}"),
            "1"
        );
        assert_eq!(
            get("aiproxy_tool_calls_total{tool=\"demo__add\",outcome=\"ok\"}"),
            "1"
        );
        assert_eq!(
            get("aiproxy_tool_calls_total{tool=\"other\",outcome=\"invalid\"}"),
            "1"
        );
        assert_eq!(get("aiproxy_mcp_server_up{server=\"demo\"}"), "1");
        assert_eq!(
            get("aiproxy_mcp_server_restarts_total{server=\"demo\"}"),
            "2"
        );
        assert_eq!(get("aiproxy_mcp_server_tools{server=\"demo\"}"), "4");
        // Every sample line belongs to a family announced by a TYPE line.
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            assert!(
                families.iter().any(|f| name.starts_with(f)),
                "undeclared sample {l}"
            );
        }
    }
}
