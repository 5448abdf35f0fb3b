//! Apiman `gateway_probe`: a key is valid when the Apiman gateway lets a request carrying it
//! through to a small "auth check" API. `GET {gateway_url}/{probe_api}/{probe_path}` with the
//! key in the `api_key_header` header (never in the URL, nothing else forwarded): 2xx accepts,
//! 401/403 rejects, anything else (5xx, 404 from a wrong path, a redirect, a transport error or
//! the timeout) is "unavailable": this request is refused but nothing is cached. Outcomes are
//! cached and probes coalesced by [`ProbeCache`].
//!
//! Thread model: one provider shared by all worker threads; a probe runs on the worker serving
//! the request, through one ureq agent (a connection pool shared across threads) whose whole
//! call is bounded by `apiman.timeout`. The agent ignores proxy environment variables and does
//! not follow redirects (which could carry the key to another host).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ureq::Agent;

use super::probe_cache::{DEFAULT_CAPACITY, Outcome, ProbeCache, Source};
use super::{ApiKey, Provider, Verdict};
use crate::config::ApimanConfig;
use crate::http::Request;

/// How much longer than a probe a thread waits for another thread's probe of the same key.
const COALESCE_MARGIN: Duration = Duration::from_secs(1);
/// Idle connections kept to the gateway.
const MAX_IDLE: usize = 16;
/// The probe's body is read (so the connection can be reused) up to this much, then dropped.
const MAX_BODY: u64 = 16 * 1024;
/// At most one "gateway unavailable" warning per this interval (a flood must not flood logs).
const WARN_EVERY: Duration = Duration::from_secs(10);

pub(super) struct ApimanProbe {
    /// `None` when the config lacks `gateway_url` or `probe_api` (fail closed).
    url: Option<String>,
    header: String,
    timeout: Duration,
    agent: Agent,
    cache: Arc<ProbeCache>,
    /// Milliseconds since `epoch` of the last warning, for rate limiting.
    last_warn: AtomicU64,
    epoch: Instant,
}

impl ApimanProbe {
    /// A provider for `cfg`; it takes over `previous`'s cache when the URL, key header and TTL
    /// are the same (a cached answer is only valid for the gateway and header that gave it).
    pub(super) fn new(cfg: &ApimanConfig, previous: Option<&ApimanProbe>) -> ApimanProbe {
        let url = probe_url(cfg);
        if url.is_none() {
            log::error!(
                "auth: apiman gateway_probe needs `gateway_url` and `probe_api`; rejecting every key it would check"
            );
        }
        let header = cfg.api_key_header.trim().to_string();
        let cache = match previous {
            Some(p) if p.url == url && p.header == header && p.cache.ttl() == cfg.cache_ttl => {
                Arc::clone(&p.cache)
            }
            _ => Arc::new(ProbeCache::new(cfg.cache_ttl, DEFAULT_CAPACITY)),
        };
        ApimanProbe {
            url,
            header,
            timeout: cfg.timeout,
            agent: build_agent(cfg.timeout),
            cache,
            last_warn: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }

    /// True when this provider shares its cache with `other` (tests of [`super::Auth::rebuild`]).
    #[cfg(test)]
    pub(super) fn shares_cache_with(&self, other: &ApimanProbe) -> bool {
        Arc::ptr_eq(&self.cache, &other.cache)
    }

    fn check_key(&self, url: &str, key: &ApiKey) -> Outcome {
        // Only visible ASCII can be a key and travel in a header unchanged; anything else (a
        // control byte could even split the header) is refused without asking the gateway.
        let Some(key) = std::str::from_utf8(key.as_bytes())
            .ok()
            .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
        else {
            return Outcome::Invalid;
        };
        let (outcome, source) =
            self.cache
                .lookup(key.as_bytes(), self.timeout + COALESCE_MARGIN, || {
                    self.probe(url, key)
                });
        log::debug!("auth: apiman probe: {outcome:?} ({})", source_name(source));
        outcome
    }

    /// One probe request. Errors and unexpected statuses are logged without the key.
    fn probe(&self, url: &str, key: &str) -> Outcome {
        let started = Instant::now();
        let result = self
            .agent
            .get(url)
            .header(self.header.as_str(), key)
            .header("Accept", "*/*")
            .call();
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Reading the (small) body lets the agent reuse the connection; errors here do
                // not change the answer the status already gave.
                let _ = resp.into_body().with_config().limit(MAX_BODY).read_to_vec();
                match status {
                    200..=299 => Outcome::Valid,
                    401 | 403 => Outcome::Invalid,
                    _ => {
                        self.warn(&format!(
                            "gateway answered {status} (expected 2xx, 401 or 403); check apiman.gateway_url, probe_api and probe_path"
                        ));
                        Outcome::Unavailable
                    }
                }
            }
            Err(e) => {
                // ureq errors name the host and the failure, never request headers.
                self.warn(&format!(
                    "probe failed after {} ms: {e}",
                    started.elapsed().as_millis()
                ));
                Outcome::Unavailable
            }
        }
    }

    fn warn(&self, msg: &str) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_warn.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!("auth: apiman {msg}; requests with unverified keys are refused");
        }
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Cache => "cached",
        Source::Probe => "probed",
        Source::Coalesced => "shared probe",
    }
}

impl Provider for ApimanProbe {
    fn name(&self) -> &'static str {
        "apiman_gateway_probe"
    }

    fn check(&self, _req: &Request, keys: &[ApiKey]) -> Verdict {
        if keys.is_empty() {
            return Verdict::NoCredential;
        }
        let Some(url) = &self.url else {
            return Verdict::Reject;
        };
        // Candidates one after another (at most three; most requests carry one). After an
        // unavailable answer the rest are not probed: a request waits for at most one probe
        // timeout, not one per candidate.
        for key in keys {
            match self.check_key(url, key) {
                Outcome::Valid => return Verdict::Accept,
                Outcome::Unavailable => return Verdict::Unavailable,
                Outcome::Invalid => {}
            }
        }
        Verdict::Reject
    }
}

/// `{gateway_url}/{probe_api}/{probe_path}`, slashes normalized (the config already strips
/// them; doing it here keeps the provider right on its own). An empty `probe_path` leaves the
/// trailing slash, as the original did.
fn probe_url(cfg: &ApimanConfig) -> Option<String> {
    let gw = cfg.gateway_url.as_deref()?.trim().trim_end_matches('/');
    let api = cfg.probe_api.as_deref()?.trim().trim_matches('/');
    if gw.is_empty() || api.is_empty() {
        return None;
    }
    let path = cfg.probe_path.trim().trim_start_matches('/');
    Some(format!("{gw}/{api}/{path}"))
}

fn build_agent(timeout: Duration) -> Agent {
    let t = Some(timeout);
    Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(t)
        .timeout_recv_response(t)
        // The whole probe, resolve to last body byte, fits in the timeout.
        .timeout_global(t)
        .max_idle_connections(MAX_IDLE)
        .max_idle_connections_per_host(MAX_IDLE)
        .user_agent(concat!("aiproxy/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApimanMode;

    fn cfg(gw: &str, api: &str, path: &str) -> ApimanConfig {
        ApimanConfig {
            enabled: true,
            mode: ApimanMode::GatewayProbe,
            gateway_url: Some(gw.into()),
            probe_api: Some(api.into()),
            probe_path: path.into(),
            ..ApimanConfig::default()
        }
    }

    #[test]
    fn probe_url_normalizes_slashes() {
        let u = |gw, api, path| probe_url(&cfg(gw, api, path));
        let want = "http://gw/apiman-gateway/aiproxy/authcheck/1.0/health";
        assert_eq!(
            u(
                "http://gw/apiman-gateway",
                "aiproxy/authcheck/1.0",
                "health"
            )
            .as_deref(),
            Some(want)
        );
        assert_eq!(
            u(
                "http://gw/apiman-gateway//",
                "/aiproxy/authcheck/1.0/",
                "/health"
            )
            .as_deref(),
            Some(want)
        );
        assert_eq!(
            u("http://gw/g", "o/a/1", "").as_deref(),
            Some("http://gw/g/o/a/1/")
        );
        let mut missing = cfg("http://gw", "o/a/1", "");
        missing.gateway_url = None;
        assert_eq!(probe_url(&missing), None);
        missing = cfg("http://gw", "/", "");
        assert_eq!(probe_url(&missing), None);
    }

    #[test]
    fn misconfigured_rejects_without_probing() {
        let mut c = cfg("http://127.0.0.1:9", "o/a/1", "");
        c.probe_api = None;
        let p = ApimanProbe::new(&c, None);
        let req = crate::auth::tests::request(&[], "");
        assert_eq!(p.check(&req, &[]), Verdict::NoCredential);
        assert_eq!(p.check(&req, &[ApiKey(b"k".to_vec())]), Verdict::Reject);
        assert_eq!(p.cache.len(), 0);
    }

    #[test]
    fn unsendable_keys_are_rejected_without_probing() {
        // Nothing listens on port 9 of loopback (discard): a probe would be Unavailable.
        let p = ApimanProbe::new(&cfg("http://127.0.0.1:9", "o/a/1", ""), None);
        let req = crate::auth::tests::request(&[], "");
        for k in [
            &b"a b"[..],
            b"k\r\nX-Evil: 1",
            b"\xff",
            "é".as_bytes(),
            b"\x00",
        ] {
            assert_eq!(p.check(&req, &[ApiKey(k.to_vec())]), Verdict::Reject);
        }
        assert_eq!(p.cache.len(), 0);
    }

    #[test]
    fn transport_error_is_unavailable_and_not_cached() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener); // now nothing listens there: connection refused
        let mut c = cfg(&format!("http://{addr}"), "o/a/1", "");
        c.timeout = Duration::from_secs(2);
        let p = ApimanProbe::new(&c, None);
        let req = crate::auth::tests::request(&[], "");
        let key = [ApiKey(b"sk-1".to_vec())];
        assert_eq!(p.check(&req, &key), Verdict::Unavailable);
        assert_eq!(p.check(&req, &key), Verdict::Unavailable);
        assert_eq!(p.cache.len(), 0);
    }

    #[test]
    fn cache_survives_a_rebuild_only_with_the_same_probe() {
        let base = cfg("http://gw", "o/a/1", "health");
        let old = ApimanProbe::new(&base, None);
        let mut slower = base.clone();
        slower.timeout = Duration::from_secs(9);
        assert!(ApimanProbe::new(&slower, Some(&old)).shares_cache_with(&old));
        let mut other_path = base.clone();
        other_path.probe_path = "other".into();
        assert!(!ApimanProbe::new(&other_path, Some(&old)).shares_cache_with(&old));
        let mut other_header = base.clone();
        other_header.api_key_header = "apikey".into();
        assert!(!ApimanProbe::new(&other_header, Some(&old)).shares_cache_with(&old));
        let mut other_ttl = base.clone();
        other_ttl.cache_ttl = Duration::from_secs(1);
        assert!(!ApimanProbe::new(&other_ttl, Some(&old)).shares_cache_with(&old));
        assert!(!ApimanProbe::new(&base, None).shares_cache_with(&old));
    }
}
