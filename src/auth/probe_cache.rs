//! The Apiman probe cache: probe outcomes per key for `cache_ttl`, bounded, keyed by a keyed
//! hash of the key (never the key itself), with concurrent probes of one key coalesced.
//!
//! - Only real answers are cached: valid (2xx) and invalid (401/403). An unavailable gateway
//!   (other status, transport error, timeout) is never cached, so an outage does not lock keys
//!   out for a whole TTL as it did in the original.
//! - At most `capacity` entries: when full, expired entries go first, then the oldest eighth in
//!   one pass (so a flood of random keys costs O(1) amortized per insert).
//! - The fingerprint is 128 bits from two SipHash instances with random per-cache seeds
//!   (`RandomState`): nobody can compute a collision, and a memory dump shows no keys.
//! - Coalescing: the first thread to miss a key becomes its leader and probes; later threads
//!   wait on the leader's result (with a deadline) instead of probing again.
//!
//! Thread model: shared by all worker threads through an `Arc` (and handed to the next chain on
//! a config reload). One mutex guards the map and the in-flight table; it is never held during
//! a probe or a wait.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Default bound on cached keys.
pub(super) const DEFAULT_CAPACITY: usize = 10_000;

/// What the gateway said about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Valid,
    Invalid,
    /// No usable answer; never cached.
    Unavailable,
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Cache,
    /// This thread probed.
    Probe,
    /// Another thread's probe of the same key answered (or its wait timed out: Unavailable).
    Coalesced,
}

type Fingerprint = (u64, u64);

struct Entry {
    valid: bool,
    expires: Instant,
}

#[derive(Default)]
struct InFlight {
    done: Mutex<Option<Outcome>>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    entries: HashMap<Fingerprint, Entry>,
    in_flight: HashMap<Fingerprint, Arc<InFlight>>,
}

pub(super) struct ProbeCache {
    ttl: Duration,
    capacity: usize,
    seeds: (RandomState, RandomState),
    state: Mutex<State>,
}

enum Role {
    Leader(Arc<InFlight>),
    Follower(Arc<InFlight>),
}

impl ProbeCache {
    pub(super) fn new(ttl: Duration, capacity: usize) -> ProbeCache {
        ProbeCache {
            ttl,
            capacity: capacity.max(1),
            seeds: (RandomState::new(), RandomState::new()),
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn fingerprint(&self, key: &[u8]) -> Fingerprint {
        (self.seeds.0.hash_one(key), self.seeds.1.hash_one(key))
    }

    /// The outcome for `key`: from the cache, from a probe of another thread already in flight
    /// (waiting at most `wait` for it), or from `probe` run on this thread.
    pub(super) fn lookup(
        &self,
        key: &[u8],
        wait: Duration,
        probe: impl FnOnce() -> Outcome,
    ) -> (Outcome, Source) {
        self.lookup_at(key, Instant::now(), wait, probe)
    }

    /// [`ProbeCache::lookup`] at a given time (tests move the clock).
    pub(super) fn lookup_at(
        &self,
        key: &[u8],
        now: Instant,
        wait: Duration,
        probe: impl FnOnce() -> Outcome,
    ) -> (Outcome, Source) {
        let fp = self.fingerprint(key);
        let role = {
            let mut st = self.state.lock();
            match st.entries.get(&fp) {
                Some(e) if e.expires > now => {
                    let outcome = if e.valid {
                        Outcome::Valid
                    } else {
                        Outcome::Invalid
                    };
                    return (outcome, Source::Cache);
                }
                Some(_) => {
                    st.entries.remove(&fp);
                }
                None => {}
            }
            match st.in_flight.get(&fp) {
                Some(f) => Role::Follower(Arc::clone(f)),
                None => {
                    let f = Arc::new(InFlight::default());
                    st.in_flight.insert(fp, Arc::clone(&f));
                    Role::Leader(f)
                }
            }
        };
        match role {
            Role::Follower(flight) => (wait_for(&flight, wait), Source::Coalesced),
            Role::Leader(flight) => {
                let mut lead = Lead {
                    cache: self,
                    fp,
                    flight,
                    now,
                    finished: false,
                };
                let outcome = probe();
                lead.finish(outcome);
                (outcome, Source::Probe)
            }
        }
    }

    /// Store a real answer (an unavailable gateway is no answer), making room first when full.
    fn insert(&self, st: &mut State, fp: Fingerprint, outcome: Outcome, now: Instant) {
        let valid = match outcome {
            Outcome::Valid => true,
            Outcome::Invalid => false,
            Outcome::Unavailable => return,
        };
        if self.ttl.is_zero() {
            return;
        }
        if !st.entries.contains_key(&fp) && st.entries.len() >= self.capacity {
            st.entries.retain(|_, e| e.expires > now);
            if st.entries.len() >= self.capacity {
                // Every entry has the same TTL, so the earliest expiry is the oldest insert.
                let mut by_age: Vec<(Instant, Fingerprint)> =
                    st.entries.iter().map(|(k, e)| (e.expires, *k)).collect();
                let n = (self.capacity / 8).clamp(1, by_age.len());
                by_age.select_nth_unstable(n - 1);
                for (_, k) in &by_age[..n] {
                    st.entries.remove(k);
                }
            }
        }
        st.entries.insert(
            fp,
            Entry {
                valid,
                expires: now + self.ttl,
            },
        );
    }

    /// Number of cached entries (expired ones included until they are pruned).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    /// Probes currently in flight.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.state.lock().in_flight.len()
    }
}

/// Wait for the leader's outcome; a leader that takes longer than `wait` counts as unavailable.
fn wait_for(flight: &InFlight, wait: Duration) -> Outcome {
    let deadline = Instant::now() + wait;
    let mut done = flight.done.lock();
    while done.is_none() {
        if flight.cv.wait_until(&mut done, deadline).timed_out() {
            break;
        }
    }
    done.unwrap_or(Outcome::Unavailable)
}

/// The leader's duty: publish the outcome to the cache and to waiting followers, even if the
/// probe panicked (then as Unavailable, from `Drop`), so nobody waits for a dead leader.
struct Lead<'a> {
    cache: &'a ProbeCache,
    fp: Fingerprint,
    flight: Arc<InFlight>,
    now: Instant,
    finished: bool,
}

impl Lead<'_> {
    fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        {
            let mut st = self.cache.state.lock();
            if st
                .in_flight
                .get(&self.fp)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                st.in_flight.remove(&self.fp);
            }
            self.cache.insert(&mut st, self.fp, outcome, self.now);
        }
        *self.flight.done.lock() = Some(outcome);
        self.flight.cv.notify_all();
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.finish(Outcome::Unavailable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const WAIT: Duration = Duration::from_secs(5);
    const TTL: Duration = Duration::from_secs(60);

    /// A probe that counts its calls and answers `outcome`.
    fn counting(calls: &AtomicUsize, outcome: Outcome) -> impl FnOnce() -> Outcome + '_ {
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            outcome
        }
    }

    #[test]
    fn valid_is_cached_until_the_ttl_expires() {
        let c = ProbeCache::new(TTL, 100);
        let calls = AtomicUsize::new(0);
        let t0 = Instant::now();
        let at = |t| c.lookup_at(b"k", t, WAIT, counting(&calls, Outcome::Valid));
        assert_eq!(at(t0), (Outcome::Valid, Source::Probe));
        assert_eq!(
            at(t0 + TTL - Duration::from_millis(1)),
            (Outcome::Valid, Source::Cache)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(at(t0 + TTL), (Outcome::Valid, Source::Probe));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn invalid_is_cached_unavailable_is_not() {
        let c = ProbeCache::new(TTL, 100);
        let calls = AtomicUsize::new(0);
        let t0 = Instant::now();
        for _ in 0..2 {
            c.lookup_at(b"bad", t0, WAIT, counting(&calls, Outcome::Invalid));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            c.lookup_at(b"bad", t0, WAIT, counting(&calls, Outcome::Valid)),
            (Outcome::Invalid, Source::Cache)
        );

        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            let r = c.lookup_at(b"down", t0, WAIT, counting(&calls, Outcome::Unavailable));
            assert_eq!(r, (Outcome::Unavailable, Source::Probe));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Once the gateway answers, the key is accepted at once.
        let r = c.lookup_at(b"down", t0, WAIT, counting(&calls, Outcome::Valid));
        assert_eq!(r, (Outcome::Valid, Source::Probe));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = ProbeCache::new(Duration::ZERO, 100);
        let calls = AtomicUsize::new(0);
        let t0 = Instant::now();
        c.lookup_at(b"k", t0, WAIT, counting(&calls, Outcome::Valid));
        c.lookup_at(b"k", t0, WAIT, counting(&calls, Outcome::Valid));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn keys_are_told_apart_and_not_stored() {
        let c = ProbeCache::new(TTL, 100);
        assert_eq!(c.fingerprint(b"sk-a"), c.fingerprint(b"sk-a"));
        assert_ne!(c.fingerprint(b"sk-a"), c.fingerprint(b"sk-b"));
        // Seeds are random per cache: another cache hashes the same key differently.
        let other = ProbeCache::new(TTL, 100);
        assert_ne!(c.fingerprint(b"sk-a"), other.fingerprint(b"sk-a"));
        let t0 = Instant::now();
        let calls = AtomicUsize::new(0);
        c.lookup_at(b"sk-a", t0, WAIT, counting(&calls, Outcome::Valid));
        let r = c.lookup_at(b"sk-b", t0, WAIT, counting(&calls, Outcome::Invalid));
        assert_eq!(r, (Outcome::Invalid, Source::Probe));
    }

    #[test]
    fn full_cache_evicts_expired_entries_first() {
        let c = ProbeCache::new(TTL, 4);
        let calls = AtomicUsize::new(0);
        let t0 = Instant::now();
        let half = t0 + TTL / 2;
        for (k, t) in [(b"k0", t0), (b"k1", t0), (b"k2", half), (b"k3", half)] {
            c.lookup_at(k, t, WAIT, counting(&calls, Outcome::Valid));
        }
        assert_eq!(c.len(), 4);
        // k0 and k1 have expired: inserting k4 drops exactly those two.
        let later = t0 + TTL + Duration::from_secs(1);
        c.lookup_at(b"k4", later, WAIT, counting(&calls, Outcome::Valid));
        assert_eq!(c.len(), 3);
        let before = calls.load(Ordering::SeqCst);
        for k in [b"k2", b"k3", b"k4"] {
            let r = c.lookup_at(k, later, WAIT, counting(&calls, Outcome::Invalid));
            assert_eq!(r, (Outcome::Valid, Source::Cache));
        }
        assert_eq!(calls.load(Ordering::SeqCst), before);
    }

    #[test]
    fn full_cache_evicts_the_oldest_and_stays_bounded() {
        let cap = 16;
        let c = ProbeCache::new(TTL, cap);
        let calls = AtomicUsize::new(0);
        let t0 = Instant::now();
        let key = |i: usize| format!("key-{i}").into_bytes();
        let at = |i: usize| t0 + Duration::from_millis(i as u64);
        for i in 0..cap {
            c.lookup_at(&key(i), at(i), WAIT, counting(&calls, Outcome::Valid));
        }
        assert_eq!(c.len(), cap);
        // One more: the oldest eighth (2 entries) makes room.
        c.lookup_at(&key(cap), at(cap), WAIT, counting(&calls, Outcome::Valid));
        assert_eq!(c.len(), cap - 1);
        let probed = |i: usize| {
            c.lookup_at(&key(i), at(cap), WAIT, counting(&calls, Outcome::Valid))
                .1
                == Source::Probe
        };
        assert!(!probed(cap));
        assert!(!probed(2));
        assert!(probed(0), "the oldest entry was evicted");
        // A flood of distinct keys never grows the cache past its bound.
        for i in 100..1000 {
            c.lookup_at(&key(i), at(i), WAIT, counting(&calls, Outcome::Invalid));
            assert!(c.len() <= cap);
        }
        // The newest survive.
        assert!(!probed(999));
    }

    #[test]
    fn concurrent_lookups_of_one_key_probe_once() {
        let c = ProbeCache::new(TTL, 100);
        let calls = AtomicUsize::new(0);
        let n = 8;
        let barrier = Barrier::new(n);
        let results: Vec<(Outcome, Source)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        c.lookup(b"shared", WAIT, || {
                            calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(300));
                            Outcome::Valid
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|(o, _)| *o == Outcome::Valid));
        let probes = results.iter().filter(|(_, s)| *s == Source::Probe).count();
        assert_eq!(probes, 1);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn coalesced_unavailable_is_shared_but_not_cached() {
        let c = ProbeCache::new(TTL, 100);
        let calls = AtomicUsize::new(0);
        let n = 4;
        let barrier = Barrier::new(n);
        std::thread::scope(|s| {
            for _ in 0..n {
                s.spawn(|| {
                    barrier.wait();
                    let (o, _) = c.lookup(b"k", WAIT, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        Outcome::Unavailable
                    });
                    assert_eq!(o, Outcome::Unavailable);
                });
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let r = c.lookup(b"k", WAIT, counting(&calls, Outcome::Valid));
        assert_eq!(r, (Outcome::Valid, Source::Probe));
    }

    #[test]
    fn follower_gives_up_after_its_wait() {
        let c = ProbeCache::new(TTL, 100);
        let leader_started = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                c.lookup(b"slow", WAIT, || {
                    leader_started.wait();
                    std::thread::sleep(Duration::from_millis(1500));
                    Outcome::Valid
                })
            });
            leader_started.wait();
            let t = Instant::now();
            let r = c.lookup(b"slow", Duration::from_millis(100), || Outcome::Valid);
            let waited = t.elapsed();
            assert_eq!(r, (Outcome::Unavailable, Source::Coalesced));
            assert!(waited >= Duration::from_millis(100), "{waited:?}");
            assert!(waited < Duration::from_millis(1000), "{waited:?}");
        });
    }

    #[test]
    fn a_panicking_probe_releases_its_followers() {
        let c = ProbeCache::new(TTL, 100);
        let leader_started = Barrier::new(2);
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                c.lookup(b"k", WAIT, || {
                    leader_started.wait();
                    std::thread::sleep(Duration::from_millis(200));
                    panic!("probe blew up");
                })
            });
            leader_started.wait();
            let t = Instant::now();
            let r = c.lookup(b"k", WAIT, || Outcome::Valid);
            assert_eq!(r, (Outcome::Unavailable, Source::Coalesced));
            assert!(t.elapsed() < Duration::from_secs(2));
            assert!(leader.join().is_err());
        });
        assert_eq!(c.in_flight(), 0);
        assert_eq!(
            c.lookup(b"k", WAIT, || Outcome::Valid),
            (Outcome::Valid, Source::Probe)
        );
    }
}
