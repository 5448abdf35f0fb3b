//! The exporter: a bounded queue of finished spans and one background thread that POSTs them
//! in batches (`{"resourceSpans": …}`, OTLP/HTTP JSON) with a timeout on every POST. Spans the
//! queue cannot take, and batches the collector did not accept in time, are dropped and
//! counted; the request threads only ever `try_send`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::TelemetryConfig;
use crate::secret::Secret;

/// Finished spans waiting for the exporter at most.
pub const QUEUE: usize = 2048;
/// Spans per POST at most.
const BATCH: usize = 512;
/// How long a span waits for more to fill its batch.
const LINGER: Duration = Duration::from_millis(500);
/// The whole of one POST (connect, send, answer).
const POST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Tracer {
    queue: SyncSender<Value>,
    sample_ratio: f64,
    dropped: std::sync::Arc<AtomicU64>,
    exported: std::sync::Arc<AtomicU64>,
}

impl Tracer {
    /// The tracer the config and environment ask for, exporting on a thread of its own;
    /// `None` when no endpoint is configured (`telemetry.otlp_endpoint`, else
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as the full URL, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`).
    pub fn start(
        cfg: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<std::sync::Arc<Tracer>> {
        let env = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let url = match &cfg.otlp_endpoint {
            Some(e) => format!("{e}/v1/traces"),
            None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(u) => u,
                None => format!(
                    "{}/v1/traces",
                    env("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')
                ),
            },
        };
        let mut headers: BTreeMap<String, Secret> = env("OTEL_EXPORTER_OTLP_HEADERS")
            .map(|h| parse_env_headers(&h))
            .unwrap_or_default();
        headers.extend(cfg.headers.clone());
        let service = cfg
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "aiproxy".to_string());
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = std::sync::Arc::new(AtomicU64::new(0));
        let exported = std::sync::Arc::new(AtomicU64::new(0));
        let post = Post {
            url,
            headers,
            service,
            dropped: std::sync::Arc::clone(&dropped),
            exported: std::sync::Arc::clone(&exported),
        };
        let spawned = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || post.run(rx));
        if let Err(e) = spawned {
            log::warn!("telemetry: cannot start the exporter thread: {e}; traces are off");
            return None;
        }
        Some(std::sync::Arc::new(Tracer {
            queue: tx,
            sample_ratio: cfg.sample_ratio,
            dropped,
            exported,
        }))
    }

    /// Whether a new trace with this id is exported (`sample_ratio`, decided by the id so
    /// every span of a trace agrees).
    pub(super) fn samples(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        let x = (u64::from_be_bytes(low) >> 11) as f64 / (1u64 << 53) as f64;
        x < self.sample_ratio
    }

    pub(super) fn queue(&self, span: Value) {
        match self.queue.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Spans dropped so far (queue full, collector slow, down or refusing).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted so far.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
}

/// `k1=v1,k2=v2` (values percent-decoded loosely: only `%20`), as the OTLP exporter spec says.
fn parse_env_headers(s: &str) -> BTreeMap<String, Secret> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().replace("%20", " ")))
        .filter(|(k, v)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                && !v.bytes().any(|b| b.is_ascii_control())
        })
        .map(|(k, v)| (k, Secret::new(v)))
        .collect()
}

struct Post {
    url: String,
    headers: BTreeMap<String, Secret>,
    service: String,
    dropped: std::sync::Arc<AtomicU64>,
    exported: std::sync::Arc<AtomicU64>,
}

impl Post {
    fn run(self, rx: Receiver<Value>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(POST_TIMEOUT))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Wait for a first span, then linger for more.
            match rx.recv() {
                Ok(s) => batch.push(s),
                Err(_) => return,
            }
            let until = Instant::now() + LINGER;
            while batch.len() < BATCH {
                let left = until.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(s) => batch.push(s),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let n = batch.len() as u64;
            let ok = self.send(&agent, std::mem::take(&mut batch));
            let counter = if ok { &self.exported } else { &self.dropped };
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn send(&self, agent: &ureq::Agent, spans: Vec<Value>) -> bool {
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": self.service}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "aiproxy", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }]});
        let mut rb = agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.expose());
        }
        match rb.send(body.to_string().as_bytes()) {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                log::warn!(
                    "telemetry: the collector answered {}; spans dropped",
                    r.status()
                );
                false
            }
            // The error names the URL at most, never a header value.
            Err(e) => {
                log::warn!("telemetry: export failed: {e}; spans dropped");
                false
            }
        }
    }
}
