//! Static `proxy_api_keys`: every key candidate is compared with every configured key in
//! constant time, and the loop never exits early — not on a match and not on a candidate that
//! is not ASCII (the original aborted the whole provider on one, skipping later valid
//! candidates). The accepted request's [`Caller`] is the entry the first matching candidate
//! named (its scope and buckets, see [`super::caller`]). Immutable after construction; shared
//! by all worker threads.

use std::sync::Arc;

use super::caller::{Caller, KeyPolicy};
use super::{ApiKey, Provider, Verdict};
use crate::config::ProxyKey;
use crate::http::Request;
use crate::secret::{Secret, constant_time_eq};

pub(super) struct StaticKeys {
    keys: Vec<Secret>,
    /// Per key, in the same order.
    policies: Vec<Arc<KeyPolicy>>,
}

impl StaticKeys {
    /// Empty entries are dropped (the config already drops them; this keeps the provider safe
    /// on its own: an empty key must never match). Buckets of same-named keys with the same
    /// limits carry over from `previous`.
    pub(super) fn new(keys: &[ProxyKey], previous: Option<&StaticKeys>) -> StaticKeys {
        let keys: Vec<&ProxyKey> = keys.iter().filter(|k| !k.key.is_empty()).collect();
        let prev = |name: &str| {
            previous.and_then(|p| p.policies.iter().find(|k| k.name == name).map(|k| &**k))
        };
        StaticKeys {
            policies: keys
                .iter()
                .map(|k| Arc::new(KeyPolicy::new(k, prev(&k.name))))
                .collect(),
            keys: keys.iter().map(|k| k.key.clone()).collect(),
        }
    }

    /// True when any candidate equals any key. Always does `candidates × keys` comparisons.
    pub(super) fn matches(&self, candidates: &[ApiKey]) -> bool {
        self.find(candidates).is_some()
    }

    /// The index of the key the first matching candidate equals. Always does
    /// `candidates × keys` comparisons.
    fn find(&self, candidates: &[ApiKey]) -> Option<usize> {
        let mut found: Option<usize> = None;
        for c in candidates {
            for (i, k) in self.keys.iter().enumerate() {
                // No short circuit: the work done does not depend on which pair matched.
                let eq = constant_time_eq(c.as_bytes(), k.expose().as_bytes());
                found = if eq && found.is_none() {
                    Some(i)
                } else {
                    found
                };
            }
        }
        std::hint::black_box(found)
    }
}

impl Provider for StaticKeys {
    fn name(&self) -> &'static str {
        "static"
    }

    fn check(&self, _req: &Request, keys: &[ApiKey]) -> Verdict {
        if keys.is_empty() {
            Verdict::NoCredential
        } else if self.matches(keys) {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }

    fn caller(&self, keys: &[ApiKey]) -> Caller {
        self.find(keys)
            .and_then(|i| self.policies.get(i))
            .map(|p| Caller::key(Arc::clone(p)))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: &[u8]) -> ApiKey {
        ApiKey(b.to_vec())
    }

    fn provider(keys: &[&str]) -> StaticKeys {
        let keys: Vec<ProxyKey> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| ProxyKey::plain(i, *k))
            .collect();
        StaticKeys::new(&keys, None)
    }

    #[test]
    fn any_candidate_against_any_key() {
        let p = provider(&["sk-one", "sk-two"]);
        assert!(p.matches(&[key(b"sk-two")]));
        assert!(p.matches(&[key(b"nope"), key(b"sk-one")]));
        assert!(!p.matches(&[key(b"sk-on"), key(b"sk-twoo"), key(b"SK-ONE")]));
        assert!(!p.matches(&[]));
    }

    #[test]
    fn non_ascii_candidate_does_not_stop_later_ones() {
        let p = provider(&["sk-one"]);
        // Latin-1 bytes, invalid UTF-8, U+FFFD, NUL: none may abort the check.
        let cands = [
            key(b"\xe9t\xe9"),
            key(b"\xff\xfe\x00"),
            key("sk-\u{fffd}".as_bytes()),
            key(b"sk-one"),
        ];
        assert!(p.matches(&cands));
        assert!(!p.matches(&cands[..3]));
    }

    #[test]
    fn empty_configured_keys_never_match() {
        let p = provider(&["", "sk-one"]);
        assert_eq!(p.keys.len(), 1);
        assert!(!p.matches(&[key(b"")]));
    }

    #[test]
    fn verdicts() {
        let p = provider(&["sk-one"]);
        let req = crate::auth::tests::request(&[], "");
        assert_eq!(p.check(&req, &[]), Verdict::NoCredential);
        assert_eq!(p.check(&req, &[key(b"x")]), Verdict::Reject);
        assert_eq!(p.check(&req, &[key(b"sk-one")]), Verdict::Accept);
    }

    #[test]
    fn caller_is_the_first_matching_candidates_key() {
        let p = provider(&["sk-one", "sk-two"]);
        let c = p.caller(&[key(b"x"), key(b"sk-two"), key(b"sk-one")]);
        assert_eq!(c.name(), Some("key-2"));
        assert_eq!(p.caller(&[key(b"x")]).name(), None);
    }
}
