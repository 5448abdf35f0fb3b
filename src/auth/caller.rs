//! Who a `/v1` request is, for the gateway's policy: the `proxy_api_keys` entry it used (name,
//! assistant scope, `rpm`/`tpm` token buckets), or nobody in particular (an open chain, Apiman
//! callers, keys without scope or limits beyond their name).
//!
//! Limits are token buckets per key per replica. `rpm`: capacity `rpm`, refilled at `rpm/60`
//! per second, one token per request. `tpm`: capacity `tpm`, refilled at `tpm/60` per second;
//! a request is admitted while the bucket is positive and the tokens the upstream reports are
//! charged after each round (the bucket may go negative: the next requests wait until it has
//! refilled). Admission checks both buckets before taking from either, so a request refused
//! by one does not use up the other. Buckets live in the auth chain and carry over a config
//! reload when the key's name and limits are unchanged. Each bucket is one small mutex, held
//! for a few arithmetic operations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::ProxyKey;
use crate::tools::naming::glob_match;

/// The policy of one request. Cheap to clone.
#[derive(Clone, Default)]
pub struct Caller {
    key: Option<Arc<KeyPolicy>>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Caller({})", self.name().unwrap_or("-"))
    }
}

/// One configured key's name, scope and buckets (never the key itself).
pub(super) struct KeyPolicy {
    pub(super) name: String,
    assistants: Option<Vec<String>>,
    pub(super) limits: Arc<Limits>,
}

impl KeyPolicy {
    /// The policy of `key`, reusing `previous` buckets when its limits are the same.
    pub(super) fn new(key: &ProxyKey, previous: Option<&KeyPolicy>) -> KeyPolicy {
        let limits = previous
            .filter(|p| p.name == key.name && p.limits.same(key.rpm, key.tpm))
            .map(|p| Arc::clone(&p.limits))
            .unwrap_or_else(|| Arc::new(Limits::new(key.rpm, key.tpm)));
        KeyPolicy {
            name: key.name.clone(),
            assistants: key.assistants.clone(),
            limits,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Tokens,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Requests => "rpm",
            Limit::Tokens => "tpm",
        }
    }
}

/// A refused admission: which limit, its size per minute, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    pub limit: Limit,
    pub per_minute: u64,
    pub retry_after: Duration,
}

impl Caller {
    pub(super) fn key(policy: Arc<KeyPolicy>) -> Caller {
        Caller { key: Some(policy) }
    }

    /// The key's configured name; `None` for callers without a `proxy_api_keys` entry.
    pub fn name(&self) -> Option<&str> {
        self.key.as_deref().map(|k| k.name.as_str())
    }

    /// Whether this caller may see and use the assistant `name`.
    pub fn may_use(&self, name: &str) -> bool {
        match self.key.as_deref().and_then(|k| k.assistants.as_deref()) {
            None => true,
            Some(globs) => globs.iter().any(|g| glob_match(g, name)),
        }
    }

    /// Admit one model request against the key's buckets (takes one request token).
    pub fn admit(&self) -> Result<(), Limited> {
        match &self.key {
            Some(k) => k.limits.admit(Instant::now()),
            None => Ok(()),
        }
    }

    /// Charge upstream tokens (reported usage of one round) to the key's `tpm` bucket.
    pub fn charge(&self, tokens: u64) {
        if let Some(k) = &self.key {
            k.limits.charge(tokens, Instant::now());
        }
    }
}

/// A key's buckets.
pub(super) struct Limits {
    rpm: Option<Bucket>,
    tpm: Option<Bucket>,
}

impl Limits {
    fn new(rpm: Option<u64>, tpm: Option<u64>) -> Limits {
        Limits {
            rpm: rpm.map(Bucket::new),
            tpm: tpm.map(Bucket::new),
        }
    }

    fn same(&self, rpm: Option<u64>, tpm: Option<u64>) -> bool {
        self.rpm.as_ref().map(|b| b.per_minute) == rpm
            && self.tpm.as_ref().map(|b| b.per_minute) == tpm
    }

    fn admit(&self, now: Instant) -> Result<(), Limited> {
        // Lock order: rpm then tpm, everywhere.
        let mut r = self.rpm.as_ref().map(|b| (b, b.state.lock()));
        let mut t = self.tpm.as_ref().map(|b| (b, b.state.lock()));
        if let Some((b, st)) = &mut r {
            b.refill(st, now);
            if st.level < 1.0 {
                return Err(b.limited(Limit::Requests, 1.0 - st.level));
            }
        }
        if let Some((b, st)) = &mut t {
            b.refill(st, now);
            if st.level <= 0.0 {
                // Positive again a moment after it reaches zero.
                return Err(b.limited(Limit::Tokens, -st.level + 0.001));
            }
        }
        if let Some((_, st)) = &mut r {
            st.level -= 1.0;
        }
        Ok(())
    }

    fn charge(&self, tokens: u64, now: Instant) {
        if let Some(b) = &self.tpm {
            let mut st = b.state.lock();
            b.refill(&mut st, now);
            // Bounded below so that a huge report cannot lock a key out for years.
            st.level = (st.level - tokens as f64).max(-b.capacity * 10.0);
        }
    }
}

struct Bucket {
    per_minute: u64,
    capacity: f64,
    per_sec: f64,
    state: Mutex<State>,
}

struct State {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u64) -> Bucket {
        let capacity = per_minute as f64;
        Bucket {
            per_minute,
            capacity,
            per_sec: capacity / 60.0,
            state: Mutex::new(State {
                level: capacity,
                at: Instant::now(),
            }),
        }
    }

    fn refill(&self, st: &mut State, now: Instant) {
        let dt = now.saturating_duration_since(st.at).as_secs_f64();
        st.level = (st.level + dt * self.per_sec).min(self.capacity);
        st.at = now;
    }

    fn limited(&self, limit: Limit, missing: f64) -> Limited {
        let secs = (missing / self.per_sec).clamp(0.001, 86_400.0);
        Limited {
            limit,
            per_minute: self.per_minute,
            retry_after: Duration::from_secs_f64(secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>) -> Limits {
        Limits::new(rpm, tpm)
    }

    #[test]
    fn rpm_bucket_drains_and_refills() {
        let l = limits(Some(60), None);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(l.admit(t0).is_ok());
        }
        let e = l.admit(t0).unwrap_err();
        assert_eq!((e.limit, e.per_minute), (Limit::Requests, 60));
        assert!(e.retry_after <= Duration::from_secs(1), "{e:?}");
        assert!(l.admit(t0 + Duration::from_millis(500)).is_err());
        assert!(l.admit(t0 + Duration::from_millis(1001)).is_ok());
    }

    #[test]
    fn tpm_admits_while_positive_and_charges_after() {
        let l = limits(Some(1000), Some(600));
        let t0 = Instant::now();
        assert!(l.admit(t0).is_ok());
        l.charge(650, t0);
        let e = l.admit(t0).unwrap_err();
        assert_eq!(e.limit, Limit::Tokens);
        // 50 tokens short at 10 per second: about 5 s.
        assert!((4.9..5.1).contains(&e.retry_after.as_secs_f64()), "{e:?}");
        // The refused request took no request token.
        assert!(l.admit(t0 + Duration::from_millis(5100)).is_ok());
        // A report far beyond the bucket is bounded.
        l.charge(u64::MAX, t0 + Duration::from_millis(5100));
        let e = l.admit(t0 + Duration::from_millis(5100)).unwrap_err();
        assert!(e.retry_after <= Duration::from_secs(700), "{e:?}");
    }

    #[test]
    fn scopes_are_globs_and_unscoped_sees_all() {
        let key = ProxyKey {
            assistants: Some(vec!["demo*".into(), "exact".into()]),
            ..ProxyKey::plain(0, "k")
        };
        let c = Caller::key(Arc::new(KeyPolicy::new(&key, None)));
        assert!(c.may_use("demo") && c.may_use("demo-2") && c.may_use("exact"));
        assert!(!c.may_use("exact2") && !c.may_use("other"));
        assert!(Caller::default().may_use("anything"));
        let none = ProxyKey {
            assistants: Some(vec![]),
            ..ProxyKey::plain(0, "k")
        };
        assert!(!Caller::key(Arc::new(KeyPolicy::new(&none, None))).may_use("demo"));
    }

    #[test]
    fn buckets_carry_over_when_limits_are_unchanged() {
        let key = ProxyKey {
            rpm: Some(1),
            ..ProxyKey::plain(0, "k")
        };
        let first = KeyPolicy::new(&key, None);
        assert!(first.limits.admit(Instant::now()).is_ok());
        let again = KeyPolicy::new(&key, Some(&first));
        assert!(Arc::ptr_eq(&first.limits, &again.limits));
        let changed = ProxyKey {
            rpm: Some(2),
            ..key
        };
        assert!(!Arc::ptr_eq(
            &first.limits,
            &KeyPolicy::new(&changed, Some(&first)).limits
        ));
    }
}
