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
//! `render` writes the text exposition; `ops` holds the per-API-key, audit-log and reload
//! series.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

mod ops;
mod render;

pub use ops::MAX_KEYS;

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

/// Routes of `aiproxy_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Models,
    Chat,
    Admin,
    Metrics,
    Other,
    Responses,
    Completions,
}

impl Route {
    /// Every route, in exposition order (`index` is the position here).
    pub const ALL: [Route; 8] = [
        Route::Health,
        Route::Models,
        Route::Chat,
        Route::Admin,
        Route::Metrics,
        Route::Other,
        Route::Responses,
        Route::Completions,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Models => "models",
            Route::Chat => "chat",
            Route::Admin => "admin",
            Route::Metrics => "metrics",
            Route::Other => "other",
            Route::Responses => "responses",
            Route::Completions => "completions",
        }
    }

    fn index(self) -> usize {
        match self {
            Route::Health => 0,
            Route::Models => 1,
            Route::Chat => 2,
            Route::Admin => 3,
            Route::Metrics => 4,
            Route::Other => 5,
            Route::Responses => 6,
            Route::Completions => 7,
        }
    }
}

/// How a request ended, for the `status` labels and the access line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered with this HTTP status.
    Http(u16),
    /// The client went away before the answer was complete; counted as `status="499"`
    /// (nginx's "client closed request"), a label kept stable for dashboards. No 499 is ever
    /// sent.
    ClientGone,
}

impl Status {
    /// Statuses with series of their own, in exposition order; any other is counted as
    /// `other` ([`Status::index`] is the position here, `ALL.len()` for `other`).
    const ALL: [Status; 19] = [
        Status::Http(200),
        Status::Http(201),
        Status::Http(204),
        Status::Http(400),
        Status::Http(401),
        Status::Http(403),
        Status::Http(404),
        Status::Http(405),
        Status::Http(408),
        Status::Http(409),
        Status::Http(413),
        Status::Http(422),
        Status::Http(429),
        Status::ClientGone,
        Status::Http(500),
        Status::Http(502),
        Status::Http(503),
        Status::Http(504),
        Status::Http(505),
    ];
    const N: usize = Status::ALL.len() + 1;

    /// The `status` label value.
    pub fn label(self) -> String {
        match self {
            Status::Http(code) => code.to_string(),
            Status::ClientGone => "499".to_string(),
        }
    }

    fn index(self) -> usize {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(Status::ALL.len())
    }

    /// The label of index `i` (`other` past the named statuses).
    fn label_at(i: usize) -> String {
        Status::ALL
            .get(i)
            .map_or_else(|| OTHER.to_string(), |s| s.label())
    }
}

impl Default for Status {
    /// Nothing answered yet (counted as `other` if it stays so).
    fn default() -> Self {
        Status::Http(0)
    }
}

impl std::fmt::Display for Status {
    /// For the access line: the status, or `client_gone`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Http(code) => write!(f, "{code}"),
            Status::ClientGone => f.write_str("client_gone"),
        }
    }
}

/// How an upstream call failed (`aiproxy_upstream_errors_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    RateLimited,
    Status,
    Protocol,
    TooLarge,
}

impl UpstreamError {
    /// Every kind, in exposition order (`index` is the position here).
    pub const ALL: [UpstreamError; 6] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::RateLimited,
        UpstreamError::Status,
        UpstreamError::Protocol,
        UpstreamError::TooLarge,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::RateLimited => "rate_limited",
            UpstreamError::Status => "status",
            UpstreamError::Protocol => "protocol",
            UpstreamError::TooLarge => "too_large",
        }
    }

    fn index(self) -> usize {
        match self {
            UpstreamError::Connect => 0,
            UpstreamError::Timeout => 1,
            UpstreamError::RateLimited => 2,
            UpstreamError::Status => 3,
            UpstreamError::Protocol => 4,
            UpstreamError::TooLarge => 5,
        }
    }
}

/// How one MCP tool call ended (`aiproxy_tool_calls_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// The tool answered normally.
    Ok,
    /// The tool answered with `isError`, or the call failed (server down, protocol error).
    Error,
    Timeout,
    Cancelled,
    /// The model called a tool that is not offered, or sent unparsable arguments.
    Invalid,
}

impl ToolOutcome {
    /// Every outcome, in exposition order (`index` is the position here).
    pub const ALL: [ToolOutcome; 5] = [
        ToolOutcome::Ok,
        ToolOutcome::Error,
        ToolOutcome::Timeout,
        ToolOutcome::Cancelled,
        ToolOutcome::Invalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::Error => "error",
            ToolOutcome::Timeout => "timeout",
            ToolOutcome::Cancelled => "cancelled",
            ToolOutcome::Invalid => "invalid",
        }
    }

    fn index(self) -> usize {
        match self {
            ToolOutcome::Ok => 0,
            ToolOutcome::Error => 1,
            ToolOutcome::Timeout => 2,
            ToolOutcome::Cancelled => 3,
            ToolOutcome::Invalid => 4,
        }
    }
}

/// Seconds; covers a fast tool call up to a long tool loop.
const LATENCY_BOUNDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// LLM rounds per chat completion.
const ROUND_BOUNDS: [f64; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 16.0, 32.0];

/// Label values interned into a fixed number of slots, first come first served. Index
/// `capacity` stands for [`OTHER`].
struct Labels {
    slots: Box<[OnceLock<Box<str>>]>,
}

impl Labels {
    fn new(capacity: usize) -> Labels {
        Labels {
            slots: (0..capacity).map(|_| OnceLock::new()).collect(),
        }
    }

    fn index(&self, value: &str) -> usize {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.get().is_none() {
                // Racing threads: one value wins the slot; a loser with another value moves on.
                let _ = slot.set(value.into());
            }
            if slot.get().is_some_and(|v| &**v == value) {
                return i;
            }
        }
        self.slots.len()
    }

    /// Slots in use, with their label, then `other`.
    fn used(&self) -> impl Iterator<Item = (usize, &str)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.get().map(|v| (i, &**v)))
            .chain(std::iter::once((self.slots.len(), OTHER)))
    }

    fn len_with_other(&self) -> usize {
        self.slots.len() + 1
    }
}

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// A histogram with fixed bounds: per-bucket counts (made cumulative when rendered), the sum
/// in millionths, and the count.
struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: counters(bounds.len() + 1),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        // Saturating float→int cast: a negative or NaN value adds 0.
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

fn histograms(n: usize, bounds: &'static [f64]) -> Box<[Histogram]> {
    (0..n).map(|_| Histogram::new(bounds)).collect()
}

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

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn every_label_renders_as_before_and_indexes_its_position() {
        let routes: Vec<&str> = Route::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(
            routes,
            [
                "health",
                "models",
                "chat",
                "admin",
                "metrics",
                "other",
                "responses",
                "completions"
            ]
        );
        let kinds: Vec<&str> = UpstreamError::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(
            kinds,
            [
                "connect",
                "timeout",
                "rate_limited",
                "status",
                "protocol",
                "too_large"
            ]
        );
        let outcomes: Vec<&str> = ToolOutcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(outcomes, ["ok", "error", "timeout", "cancelled", "invalid"]);
        let statuses: Vec<String> = (0..Status::N).map(Status::label_at).collect();
        assert_eq!(
            statuses,
            [
                "200", "201", "204", "400", "401", "403", "404", "405", "408", "409", "413", "422",
                "429", "499", "500", "502", "503", "504", "505", "other"
            ]
        );
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, k) in UpstreamError::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, o) in ToolOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
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
    fn labels_are_interned_and_bounded() {
        let l = Labels::new(3);
        assert_eq!(l.index("a"), 0);
        assert_eq!(l.index("b"), 1);
        assert_eq!(l.index("a"), 0);
        assert_eq!(l.index("c"), 2);
        assert_eq!(l.index("d"), 3, "beyond capacity folds into other");
        assert_eq!(l.index("e"), 3);
        let used: Vec<_> = l.used().collect();
        assert_eq!(used, [(0, "a"), (1, "b"), (2, "c"), (3, OTHER)]);
    }

    #[test]
    fn interning_from_many_threads_gives_one_slot_per_value() {
        let l = Labels::new(8);
        std::thread::scope(|s| {
            for t in 0..8 {
                let l = &l;
                s.spawn(move || {
                    for i in 0..200 {
                        l.index(&format!("v{}", (i + t) % 5));
                    }
                });
            }
        });
        let mut names: Vec<&str> = l.used().map(|(_, n)| n).collect();
        names.sort_unstable();
        assert_eq!(names, ["other", "v0", "v1", "v2", "v3", "v4"]);
    }

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&ROUND_BOUNDS);
        for v in [1.0, 2.0, 2.0, 7.0, 100.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"1\"}"), Some("1"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"2\"}"), Some("3"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"6\"}"), Some("3"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"8\"}"), Some("4"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"32\"}"), Some("4"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"+Inf\"}"), Some("5"));
        assert_eq!(line(&out, "x_sum{a=\"b\"}"), Some("112"));
        assert_eq!(line(&out, "x_count{a=\"b\"}"), Some("5"));
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
