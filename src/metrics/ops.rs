//! Operations series: per API key name (`proxy_api_keys` entries; a bounded label table like
//! the others, `other` beyond [`MAX_KEYS`]) the model requests admitted, refused at a limit and
//! the upstream tokens charged; the audit log's written and dropped lines; config reloads by
//! outcome (the file watcher and SIGHUP).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::render::{counter, family, label, sample};
use super::{Labels, counters};

/// Distinct key names tracked; the rest are reported as `other`.
pub const MAX_KEYS: usize = 64;

/// The limits a key can hit, in exposition order.
const LIMITS: [&str; 2] = ["rpm", "tpm"];

pub(super) struct Ops {
    keys: Labels,
    key_requests: Box<[AtomicU64]>,
    /// key × limit
    key_limited: Box<[AtomicU64]>,
    key_tokens: Box<[AtomicU64]>,
    audit_written: AtomicU64,
    audit_dropped: AtomicU64,
    /// ok, failed
    reloads: [AtomicU64; 2],
}

impl Ops {
    pub(super) fn new() -> Ops {
        let keys = Labels::new(MAX_KEYS);
        let n = keys.len_with_other();
        Ops {
            key_requests: counters(n),
            key_limited: counters(n * LIMITS.len()),
            key_tokens: counters(n),
            keys,
            audit_written: AtomicU64::new(0),
            audit_dropped: AtomicU64::new(0),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    pub(super) fn render(&self, o: &mut String) {
        family(
            o,
            "aiproxy_key_requests_total",
            "counter",
            "Model requests admitted per API key name.",
        );
        for (k, name) in self.keys.used() {
            let v = self.key_requests[k].load(Relaxed);
            counter(o, "aiproxy_key_requests_total", &label("key", name), v);
        }
        family(
            o,
            "aiproxy_key_rate_limited_total",
            "counter",
            "Model requests refused with 429 per API key name and limit (rpm, tpm).",
        );
        for (k, name) in self.keys.used() {
            for (i, limit) in LIMITS.iter().enumerate() {
                let labels = format!("{},{}", label("key", name), label("limit", limit));
                let v = self.key_limited[k * LIMITS.len() + i].load(Relaxed);
                counter(o, "aiproxy_key_rate_limited_total", &labels, v);
            }
        }
        family(
            o,
            "aiproxy_key_tokens_total",
            "counter",
            "Upstream tokens (prompt + completion, as reported) per API key name.",
        );
        for (k, name) in self.keys.used() {
            let v = self.key_tokens[k].load(Relaxed);
            counter(o, "aiproxy_key_tokens_total", &label("key", name), v);
        }
        family(
            o,
            "aiproxy_audit_lines_total",
            "counter",
            "Tool-call lines handed to the audit log.",
        );
        sample(
            o,
            "aiproxy_audit_lines_total",
            "",
            self.audit_written.load(Relaxed),
        );
        family(
            o,
            "aiproxy_audit_dropped_total",
            "counter",
            "Tool-call lines dropped because the audit log's queue was full.",
        );
        sample(
            o,
            "aiproxy_audit_dropped_total",
            "",
            self.audit_dropped.load(Relaxed),
        );
        family(
            o,
            "aiproxy_config_reloads_total",
            "counter",
            "Config reloads by the file watcher and SIGHUP, by result.",
        );
        for (i, result) in ["ok", "failed"].iter().enumerate() {
            let v = self.reloads[i].load(Relaxed);
            counter(
                o,
                "aiproxy_config_reloads_total",
                &label("result", result),
                v,
            );
        }
    }
}

impl super::Metrics {
    /// A model request of key `key` admitted.
    pub fn key_request(&self, key: &str) {
        let k = self.ops.keys.index(key);
        self.ops.key_requests[k].fetch_add(1, Relaxed);
    }

    /// A model request of key `key` refused at `limit` (`rpm` or `tpm`).
    pub fn key_limited(&self, key: &str, limit: &str) {
        let k = self.ops.keys.index(key);
        let i = LIMITS.iter().position(|l| *l == limit).unwrap_or(0);
        self.ops.key_limited[k * LIMITS.len() + i].fetch_add(1, Relaxed);
    }

    /// Upstream tokens charged to key `key`.
    pub fn key_tokens(&self, key: &str, tokens: u64) {
        let k = self.ops.keys.index(key);
        self.ops.key_tokens[k].fetch_add(tokens, Relaxed);
    }

    /// An audit line queued (`true`) or dropped because the queue was full (`false`).
    pub fn audit_line(&self, queued: bool) {
        let c = if queued {
            &self.ops.audit_written
        } else {
            &self.ops.audit_dropped
        };
        c.fetch_add(1, Relaxed);
    }

    /// A config reload finished.
    pub fn config_reload(&self, ok: bool) {
        self.ops.reloads[usize::from(!ok)].fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;

    #[test]
    fn key_series_are_bounded_and_rendered() {
        let m = Metrics::new();
        for i in 0..100 {
            m.key_request(&format!("k{i}"));
        }
        m.key_limited("k1", "tpm");
        m.key_tokens("k1", 42);
        m.audit_line(false);
        m.config_reload(false);
        let text = m.render(&[]);
        assert!(text.contains("aiproxy_key_requests_total{key=\"k0\"} 1"));
        assert!(text.contains("aiproxy_key_requests_total{key=\"other\"} 36"));
        assert!(text.contains("aiproxy_key_rate_limited_total{key=\"k1\",limit=\"tpm\"} 1"));
        assert!(text.contains("aiproxy_key_tokens_total{key=\"k1\"} 42"));
        assert!(text.contains("aiproxy_audit_dropped_total 1"));
        assert!(text.contains("aiproxy_config_reloads_total{result=\"failed\"} 1"));
    }
}
