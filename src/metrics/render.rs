//! The Prometheus text exposition (format 0.0.4) of a [`Metrics`] registry. Runs on the worker
//! thread that answers `GET /metrics`; reads the atomics once each, takes no lock. Counter
//! series that are still zero are left out (a family is still announced by its HELP/TYPE).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::{Histogram, Labels, Metrics, Route, Status, ToolOutcome, UpstreamError};
use crate::mcp::{ServerState, ServerStatus};

impl Metrics {
    /// The exposition text. `mcp` is the state of the configured MCP servers, read by the
    /// caller from the current config snapshot.
    pub fn render(&self, mcp: &[(String, ServerStatus)]) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let o = &mut out;
        family(
            o,
            "aiproxy_build_info",
            "gauge",
            "Version of the running binary.",
        );
        sample(
            o,
            "aiproxy_build_info",
            &label("version", env!("CARGO_PKG_VERSION")),
            1,
        );
        family(
            o,
            "aiproxy_start_time_seconds",
            "gauge",
            "Unix time the process started.",
        );
        sample(o, "aiproxy_start_time_seconds", "", self.started_at);

        family(
            o,
            "aiproxy_http_requests_total",
            "counter",
            "Answered HTTP requests by route and status.",
        );
        for route in Route::ALL {
            for s in 0..Status::N {
                let labels = format!(
                    "{},{}",
                    label("route", route.label()),
                    label("status", &Status::label_at(s))
                );
                counter(
                    o,
                    "aiproxy_http_requests_total",
                    &labels,
                    self.http[route.index() * Status::N + s].load(Relaxed),
                );
            }
        }
        if let Some(load) = self.http_stats.get() {
            let super::ServerLoad {
                in_flight,
                open_connections: open,
                shed,
            } = load();
            family(
                o,
                "aiproxy_in_flight_requests",
                "gauge",
                "Requests admitted and not yet answered (queued or running).",
            );
            sample(o, "aiproxy_in_flight_requests", "", in_flight as u64);
            family(
                o,
                "aiproxy_open_connections",
                "gauge",
                "Open client connections.",
            );
            sample(o, "aiproxy_open_connections", "", open as u64);
            family(
                o,
                "aiproxy_shed_requests_total",
                "counter",
                "Requests and connections refused with 503 because a limit was reached.",
            );
            sample(o, "aiproxy_shed_requests_total", "", shed);
        }

        family(
            o,
            "aiproxy_requests_total",
            "counter",
            "Chat completions by assistant and status (499: the client went away).",
        );
        for (a, name) in self.assistants.used() {
            for s in 0..Status::N {
                let labels = format!(
                    "{},{}",
                    label("assistant", name),
                    label("status", &Status::label_at(s))
                );
                counter(
                    o,
                    "aiproxy_requests_total",
                    &labels,
                    self.chat[a * Status::N + s].load(Relaxed),
                );
            }
        }
        histograms(
            o,
            "aiproxy_request_duration_seconds",
            "Chat completion duration, whole stream included.",
            "assistant",
            &self.assistants,
            &self.chat_latency,
        );
        histograms(
            o,
            "aiproxy_loop_iterations",
            "LLM rounds per chat completion (1 = answered without tools).",
            "assistant",
            &self.assistants,
            &self.rounds,
        );

        family(
            o,
            "aiproxy_upstream_requests_total",
            "counter",
            "Calls to upstream LLMs (one per round) by backend.",
        );
        for (b, name) in self.backends.used() {
            counter(
                o,
                "aiproxy_upstream_requests_total",
                &label("backend", name),
                self.upstream_calls[b].load(Relaxed),
            );
        }
        family(
            o,
            "aiproxy_upstream_errors_total",
            "counter",
            "Failed upstream calls by backend and kind.",
        );
        for (b, name) in self.backends.used() {
            for kind in UpstreamError::ALL {
                let labels = format!("{},{}", label("backend", name), label("kind", kind.label()));
                counter(
                    o,
                    "aiproxy_upstream_errors_total",
                    &labels,
                    self.upstream_errors[b * UpstreamError::ALL.len() + kind.index()].load(Relaxed),
                );
            }
        }
        histograms(
            o,
            "aiproxy_upstream_duration_seconds",
            "Upstream call duration (one round, streamed body included).",
            "backend",
            &self.backends,
            &self.upstream_latency,
        );

        family(
            o,
            "aiproxy_tool_calls_total",
            "counter",
            "MCP tool calls by exposed tool name and outcome.",
        );
        for (t, name) in self.tools.used() {
            for outcome in ToolOutcome::ALL {
                let labels = format!(
                    "{},{}",
                    label("tool", name),
                    label("outcome", outcome.label())
                );
                counter(
                    o,
                    "aiproxy_tool_calls_total",
                    &labels,
                    self.tool_calls[t * ToolOutcome::ALL.len() + outcome.index()].load(Relaxed),
                );
            }
        }
        histograms(
            o,
            "aiproxy_tool_call_duration_seconds",
            "MCP tool call duration by exposed tool name.",
            "tool",
            &self.tools,
            &self.tool_latency,
        );

        render_mcp(o, mcp);
        self.ops.render(o);
        out
    }
}

fn render_mcp(o: &mut String, mcp: &[(String, ServerStatus)]) {
    family(
        o,
        "aiproxy_mcp_server_up",
        "gauge",
        "1 when the MCP server's session is ready (servers start on first use).",
    );
    for (name, st) in mcp {
        let up = u64::from(st.state == ServerState::Ready);
        sample(o, "aiproxy_mcp_server_up", &label("server", name), up);
    }
    family(
        o,
        "aiproxy_mcp_server_restarts_total",
        "counter",
        "Sessions started to replace one that had been ready.",
    );
    for (name, st) in mcp {
        sample(
            o,
            "aiproxy_mcp_server_restarts_total",
            &label("server", name),
            st.restarts,
        );
    }
    family(
        o,
        "aiproxy_mcp_server_tools",
        "gauge",
        "Tools the MCP server lists (absent until it started).",
    );
    for (name, st) in mcp {
        if let Some(n) = st.tool_count {
            sample(
                o,
                "aiproxy_mcp_server_tools",
                &label("server", name),
                n as u64,
            );
        }
    }
}

impl Histogram {
    /// `_bucket` lines (cumulative, `+Inf` last), `_sum` and `_count` for one label set.
    pub(super) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), f64::to_string);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            braces(labels),
            self.count.load(Relaxed)
        );
    }
}

/// One histogram family with a series per label value that has observations.
fn histograms(
    o: &mut String,
    name: &str,
    help: &str,
    key: &str,
    labels: &Labels,
    hists: &[Histogram],
) {
    family(o, name, "histogram", help);
    for (i, value) in labels.used() {
        if hists[i].count.load(Relaxed) > 0 {
            hists[i].render(o, name, &label(key, value));
        }
    }
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub(super) fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "{name}{} {value}", braces(labels));
}

/// A counter series, left out while zero.
pub(super) fn counter(out: &mut String, name: &str, labels: &str, value: u64) {
    if value > 0 {
        sample(out, name, labels, value);
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// `key="value"` with the text format's escaping of backslash, double quote and newline.
pub(super) fn label(key: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{key}=\"{escaped}\"")
}
