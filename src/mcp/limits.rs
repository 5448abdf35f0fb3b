//! Per-server limits: the counting semaphore that bounds concurrent calls to one server, and
//! the jitter applied to restart back-offs. Waits are sliced so a [`Cancel`] is noticed within
//! ~100 ms; nothing here does I/O.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Error;
use crate::cancel::Cancel;

/// Waits for a free slot wake up this often to check cancel and deadline.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// `base` shortened by up to 10 %, at random, so servers that failed together do not retry in
/// step (never longer: callers may rely on the documented back-off as an upper bound).
pub(super) fn jittered(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::unix_nanos());
    let tenth_permille = h.finish() % 1000;
    base - base / 10 * u32::try_from(tenth_permille).unwrap_or(0) / 1000
}

/// A counting semaphore bounding concurrent calls to one server.
pub(super) struct Slots {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

pub(super) struct SlotGuard<'a>(&'a Slots);

impl Slots {
    pub(super) fn new(max: usize) -> Slots {
        Slots {
            max,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    pub(super) fn acquire(
        &self,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<SlotGuard<'_>, Error> {
        let mut used = self.used.lock();
        while *used >= self.max {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            self.freed
                .wait_for(&mut used, (deadline - now).min(WAIT_SLICE));
            parking_lot::MutexGuard::unlocked(&mut used, super::tick_caller);
        }
        *used += 1;
        Ok(SlotGuard(self))
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.used.lock() -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_only_shortens_by_up_to_a_tenth() {
        let base = Duration::from_secs(8);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let d = jittered(base);
            assert!(d <= base && d >= base - base / 10, "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 1, "no jitter at all");
    }
}
