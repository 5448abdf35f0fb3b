//! The `/v1/*` auth chain (docs/auth-and-admin.md#v1-auth): which API key a request carries, and whether any configured
//! provider accepts it. Admin checks (`/admin/*`, `/metrics`) are separate, in [`admin`].
//!
//! Keys are read from `Authorization: Bearer <key>`, `X-API-Key`, `api-key` (Azure style) and
//! `?apikey=` (in that order, de-duplicated). Providers, each behind [`Provider`]: static
//! `proxy_api_keys` (`static_keys`), Apiman `trusted_header` (`trusted_header`) and Apiman `gateway_probe`
//! (`apiman_probe`, with its cache in `probe_cache`). They are tried cheapest first and the
//! first that accepts authorizes the request; with none configured the chain is open
//! ([`Auth::is_open`]; the caller logs that at startup).
//!
//! Thread model: an [`Auth`] is immutable and shared by every worker thread (`Send + Sync`);
//! [`Auth::check`] runs on the worker serving the request and may block on an Apiman probe for
//! at most the configured `apiman.timeout` (plus a short margin when it waits for another
//! thread's probe of the same key). An accepted request carries a [`Caller`]: the static key
//! entry it used (name, assistant scope, `rpm`/`tpm` buckets; see `caller`), or nobody in
//! particular — Apiman callers are unscoped and unlimited. Rebuilding on a config reload ([`Auth::rebuild`]) is cheap
//! and keeps the probe cache when the probe settings did not change, and each key's buckets when
//! its name and limits did not change. Keys never reach a log
//! line or an error message.

pub mod admin;
mod apiman_probe;
mod caller;
mod probe_cache;
mod static_keys;
mod trusted_header;

use std::fmt;
use std::sync::Arc;

use crate::config::{ApimanMode, Config};
use crate::http::Request;

pub use admin::{AdminAuth, AdminError, Listener, is_local_host, is_loopback};
pub use caller::{Caller, Limit, Limited};

use apiman_probe::ApimanProbe;
use static_keys::StaticKeys;
use trusted_header::TrustedHeader;

/// Candidates longer than this cannot be real keys; they are ignored rather than compared or
/// sent to the Apiman gateway.
pub const MAX_KEY_BYTES: usize = 4096;

/// An API key candidate taken from a request. Bytes, because a percent-decoded `?apikey=` need
/// not be UTF-8. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Vec<u8>);

impl ApiKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(*** {} bytes)", self.0.len())
    }
}

/// The key candidates of a request, in order: `Authorization: Bearer` (scheme case-insensitive;
/// any other scheme is not a key — the original used `Basic …` values whole), `X-API-Key`,
/// `api-key` (what Azure OpenAI clients send), `?apikey=` (percent-decoded). Empty and over-long values are skipped; duplicates are kept
/// once, at their first position.
pub fn extract_keys(req: &Request) -> Vec<ApiKey> {
    let bearer = req.header("Authorization").and_then(bearer_token);
    let x_api_key = req
        .header("X-API-Key")
        .map(|v| v.trim().as_bytes().to_vec());
    let azure = req.header("api-key").map(|v| v.trim().as_bytes().to_vec());
    let query = query_param(&req.query, "apikey");
    let mut keys: Vec<ApiKey> = Vec::with_capacity(4);
    for k in [
        bearer.map(|b| b.as_bytes().to_vec()),
        x_api_key,
        azure,
        query,
    ]
    .into_iter()
    .flatten()
    {
        if !k.is_empty() && k.len() <= MAX_KEY_BYTES && !keys.iter().any(|e| e.0 == k) {
            keys.push(ApiKey(k));
        }
    }
    keys
}

/// The token of an `Authorization: Bearer <token>` value; `None` for any other scheme.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty())
}

/// The first non-empty value of `name` in a raw query string, percent-decoded. `+` is kept as
/// is: keys may contain it and clients often leave it unencoded, while no key contains a space.
fn query_param(query: &str, name: &str) -> Option<Vec<u8>> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| percent_decode(k) == name.as_bytes())
        .map(|(_, v)| percent_decode(v))
        .find(|v| !v.is_empty())
}

/// `%XX` → byte; a malformed escape is kept literally (as browsers do).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: the value is below 256.
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// What one provider says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// A credential of this provider's kind was offered and is wrong.
    Reject,
    /// The provider could not decide (Apiman gateway error or timeout); the request is refused
    /// but nothing is cached.
    Unavailable,
    /// No credential of this provider's kind was offered.
    NoCredential,
}

/// One way of accepting a request. Implementations are shared by all worker threads.
pub trait Provider: Send + Sync {
    /// Short name for logs and the admin config dump (`static`, `apiman_probe`, …).
    fn name(&self) -> &'static str;
    /// Decide on one request; `keys` are its candidates from [`extract_keys`].
    fn check(&self, req: &Request, keys: &[ApiKey]) -> Verdict;
    /// Who an accepted request is (its scope and limits); unscoped unless the provider knows.
    fn caller(&self, _keys: &[ApiKey]) -> Caller {
        Caller::default()
    }
}

/// Why a request was refused (answered as mapped in [`crate::error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No credential at all.
    Missing,
    /// Every offered credential was rejected.
    Invalid,
    /// Nothing accepted and at least one provider could not decide (Apiman unavailable).
    Unavailable,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "missing API key",
            AuthError::Invalid => "invalid API key",
            AuthError::Unavailable => "API key could not be verified (auth gateway unavailable)",
        })
    }
}

impl std::error::Error for AuthError {}

/// The `/v1/*` auth chain built from a [`Config`].
pub struct Auth {
    /// Cheapest first: static keys, trusted header, then the network probe.
    providers: Vec<Arc<dyn Provider>>,
    /// Kept separately so that [`Auth::rebuild`] can hand the cache to the next chain.
    probe: Option<Arc<ApimanProbe>>,
    /// Kept so that [`Auth::rebuild`] can hand the keys' buckets to the next chain.
    statics: Option<Arc<StaticKeys>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("providers", &self.provider_names())
            .finish()
    }
}

impl Auth {
    pub fn from_config(cfg: &Config) -> Auth {
        Auth::build(cfg, None, None)
    }

    /// The chain for a new config. The Apiman probe cache (and its per-process hash seed)
    /// carries over when the probe URL, key header and TTL are unchanged, so a reload does not
    /// re-probe every key.
    pub fn rebuild(&self, cfg: &Config) -> Auth {
        Auth::build(cfg, self.probe.as_deref(), self.statics.as_deref())
    }

    /// An open chain (no providers), e.g. for tests.
    pub fn open() -> Auth {
        Auth {
            providers: Vec::new(),
            probe: None,
            statics: None,
        }
    }

    /// A chain of custom providers, tried in order (tests, embedding).
    pub fn with_providers(providers: Vec<Arc<dyn Provider>>) -> Auth {
        Auth {
            providers,
            probe: None,
            statics: None,
        }
    }

    fn build(
        cfg: &Config,
        previous: Option<&ApimanProbe>,
        previous_keys: Option<&StaticKeys>,
    ) -> Auth {
        let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
        let mut probe = None;
        let mut statics = None;
        if !cfg.proxy_api_keys.is_empty() {
            let keys = Arc::new(StaticKeys::new(&cfg.proxy_api_keys, previous_keys));
            providers.push(Arc::clone(&keys) as Arc<dyn Provider>);
            statics = Some(keys);
        }
        if cfg.apiman.enabled {
            match cfg.apiman.mode {
                ApimanMode::TrustedHeader => {
                    providers.push(Arc::new(TrustedHeader::new(&cfg.apiman)));
                }
                ApimanMode::GatewayProbe => {
                    let p = Arc::new(ApimanProbe::new(&cfg.apiman, previous));
                    providers.push(Arc::clone(&p) as Arc<dyn Provider>);
                    probe = Some(p);
                }
            }
        }
        Auth {
            providers,
            probe,
            statics,
        }
    }

    /// True when no provider is configured: every `/v1/*` request passes.
    pub fn is_open(&self) -> bool {
        self.providers.is_empty()
    }

    /// Provider names in the order they are tried (for the admin config dump).
    pub fn provider_names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    /// Decide on one request. Blocks for at most the Apiman probe timeout (plus a margin).
    pub fn check(&self, req: &Request) -> Result<(), AuthError> {
        self.identify(req).map(|_| ())
    }

    /// [`Auth::check`], and say who the request is (its key's scope and limits).
    pub fn identify(&self, req: &Request) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(Caller::default());
        }
        let keys = extract_keys(req);
        let mut worst = Verdict::NoCredential;
        for p in &self.providers {
            match p.check(req, &keys) {
                Verdict::Accept => {
                    log::debug!(
                        "auth: {} {}: accepted by {}",
                        req.method,
                        req.path,
                        p.name()
                    );
                    return Ok(p.caller(&keys));
                }
                Verdict::Unavailable => worst = Verdict::Unavailable,
                Verdict::Reject if worst == Verdict::NoCredential => worst = Verdict::Reject,
                Verdict::Reject | Verdict::NoCredential => {}
            }
        }
        let err = match worst {
            Verdict::Unavailable => AuthError::Unavailable,
            Verdict::Reject => AuthError::Invalid,
            Verdict::NoCredential | Verdict::Accept => AuthError::Missing,
        };
        log::debug!(
            "auth: {} {}: refused ({err}; {} key candidate(s), providers: {})",
            req.method,
            req.path,
            keys.len(),
            self.provider_names().join(",")
        );
        Err(err)
    }
}

#[cfg(test)]
mod tests;
