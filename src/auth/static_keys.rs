//! Static `proxy_api_keys`: every key candidate is compared with every configured key in
//! constant time, and the loop never exits early — not on a match and not on a candidate that
//! is not ASCII (the original aborted the whole provider on one, skipping later valid
//! candidates). Immutable after construction; shared by all worker threads.

use super::{ApiKey, Provider, Verdict};
use crate::http::Request;
use crate::secret::{Secret, constant_time_eq};

pub(super) struct StaticKeys {
    keys: Vec<Secret>,
}

impl StaticKeys {
    /// Empty entries are dropped (the config already drops them; this keeps the provider safe
    /// on its own: an empty key must never match).
    pub(super) fn new(keys: &[Secret]) -> StaticKeys {
        StaticKeys {
            keys: keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
        }
    }

    /// True when any candidate equals any key. Always does `candidates × keys` comparisons.
    pub(super) fn matches(&self, candidates: &[ApiKey]) -> bool {
        let mut found = false;
        for c in candidates {
            for k in &self.keys {
                // `|` rather than `||`: no short circuit, the work done does not depend on
                // which pair matched.
                found |= constant_time_eq(c.as_bytes(), k.expose().as_bytes());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: &[u8]) -> ApiKey {
        ApiKey(b.to_vec())
    }

    fn provider(keys: &[&str]) -> StaticKeys {
        StaticKeys::new(&keys.iter().map(|k| Secret::new(*k)).collect::<Vec<_>>())
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
}
