//! Name resolution for the upstream HTTP agents.
//!
//! ureq resolves the upstream host before it looks in its connection pool, so its default
//! resolver runs on every request, even one served on a pooled connection; with a resolve
//! timeout set it also spawns a thread per lookup to enforce it. Measured with `make bench`,
//! that thread was about two thirds of aiproxy's CPU per proxied request (~200 µs of ~300 µs)
//! and most of its added latency. [`CachingResolver`] answers IP-literal hosts at once and
//! keeps looked-up names for [`TTL`], so a pooled request costs a map lookup; a miss goes
//! through ureq's own resolver (and its timeout) unchanged. Failures are never cached.
//!
//! Thread model: one resolver per agent, shared by every worker using that backend; the map
//! sits behind a mutex that is never held across a lookup.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up name is reused (upstream addresses rarely move; 30 s bounds the staleness).
pub const TTL: Duration = Duration::from_secs(30);
/// Names kept at once (a backend talks to one host; redirects are not followed).
const MAX_ENTRIES: usize = 32;

#[derive(Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingResolver").finish_non_exhaustive()
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        // Anything unusual (no scheme, unknown default port) gets ureq's own handling and errors.
        let Some(key) = key else {
            return self.inner.resolve(uri, config, timeout);
        };
        if let Ok(addr) = key.parse::<SocketAddr>() {
            let mut out = self.empty();
            out.push(addr);
            return Ok(out);
        }
        if let Some((at, addrs)) = self.cache.lock().get(&key)
            && at.elapsed() < TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::Agent;

    fn resolve(r: &CachingResolver, url: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: Uri = url.parse().unwrap();
        let config = Agent::config_builder().build();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(5),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &config, timeout).map(|a| a.to_vec())
    }

    #[test]
    fn ip_literals_are_answered_without_a_lookup_or_a_cache_entry() {
        let r = CachingResolver::default();
        assert_eq!(
            resolve(&r, "http://127.0.0.1:9000/v1").unwrap(),
            vec!["127.0.0.1:9000".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "https://[::1]/v1").unwrap(),
            vec!["[::1]:443".parse().unwrap()]
        );
        assert!(r.cache.lock().is_empty());
    }

    #[test]
    fn names_are_cached_until_they_expire() {
        let r = CachingResolver::default();
        let first = resolve(&r, "http://localhost:8080/x").unwrap();
        assert!(
            first
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback())
        );
        assert_eq!(r.cache.lock().len(), 1);
        // A planted entry proves the second answer comes from the cache.
        let planted: SocketAddr = "127.0.0.9:8080".parse().unwrap();
        let mut addrs = r.empty();
        addrs.push(planted);
        r.cache
            .lock()
            .insert("localhost:8080".into(), (Instant::now(), addrs));
        assert_eq!(
            resolve(&r, "http://localhost:8080/y").unwrap(),
            vec![planted]
        );
        // An expired entry is looked up again (and replaced).
        r.cache.lock().get_mut("localhost:8080").unwrap().0 -= TTL + Duration::from_secs(1);
        let again = resolve(&r, "http://localhost:8080/z").unwrap();
        assert!(!again.contains(&planted), "{again:?}");
        assert_eq!(r.cache.lock().len(), 1);
    }
}
