//! The storage of the metrics registry: [`Labels`] interns label values that come from the
//! config (assistants, backends, tools, API keys) into a fixed number of slots, first come
//! first served, with everything beyond folded into `other`; [`counters`] and [`Histogram`]
//! are the atomic cells the registry's tables are made of. Lock-free: any thread records, a
//! scrape reads each atomic once (`render` writes them out).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::OTHER;

/// Label values interned into a fixed number of slots, first come first served. Index
/// `capacity` stands for [`OTHER`].
pub(super) struct Labels {
    pub(super) slots: Box<[OnceLock<Box<str>>]>,
}

impl Labels {
    pub(super) fn new(capacity: usize) -> Labels {
        Labels {
            slots: (0..capacity).map(|_| OnceLock::new()).collect(),
        }
    }

    pub(super) fn index(&self, value: &str) -> usize {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.get().is_none() {
                // Racing threads: one value wins the slot; a loser with another value moves on.
                let _ = slot.set(value.into());
            }
            if slot.get().is_some_and(|v| &**v == value) {
                return i;
            }
        }
        self.slots.len()
    }

    /// Slots in use, with their label, then `other`.
    pub(super) fn used(&self) -> impl Iterator<Item = (usize, &str)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.get().map(|v| (i, &**v)))
            .chain(std::iter::once((self.slots.len(), OTHER)))
    }

    pub(super) fn len_with_other(&self) -> usize {
        self.slots.len() + 1
    }
}

pub(super) fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// A histogram with fixed bounds: per-bucket counts (made cumulative when rendered), the sum
/// in millionths, and the count.
pub(super) struct Histogram {
    pub(super) bounds: &'static [f64],
    pub(super) buckets: Box<[AtomicU64]>,
    pub(super) sum_micros: AtomicU64,
    pub(super) count: AtomicU64,
}

impl Histogram {
    pub(super) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: counters(bounds.len() + 1),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        // Saturating float→int cast: a negative or NaN value adds 0.
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

pub(super) fn histograms(n: usize, bounds: &'static [f64]) -> Box<[Histogram]> {
    (0..n).map(|_| Histogram::new(bounds)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ROUND_BOUNDS;
    use crate::metrics::tests::line;

    #[test]
    fn labels_are_interned_and_bounded() {
        let l = Labels::new(3);
        assert_eq!(l.index("a"), 0);
        assert_eq!(l.index("b"), 1);
        assert_eq!(l.index("a"), 0);
        assert_eq!(l.index("c"), 2);
        assert_eq!(l.index("d"), 3, "beyond capacity folds into other");
        assert_eq!(l.index("e"), 3);
        let used: Vec<_> = l.used().collect();
        assert_eq!(used, [(0, "a"), (1, "b"), (2, "c"), (3, OTHER)]);
    }

    #[test]
    fn interning_from_many_threads_gives_one_slot_per_value() {
        let l = Labels::new(8);
        std::thread::scope(|s| {
            for t in 0..8 {
                let l = &l;
                s.spawn(move || {
                    for i in 0..200 {
                        l.index(&format!("v{}", (i + t) % 5));
                    }
                });
            }
        });
        let mut names: Vec<&str> = l.used().map(|(_, n)| n).collect();
        names.sort_unstable();
        assert_eq!(names, ["other", "v0", "v1", "v2", "v3", "v4"]);
    }

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&ROUND_BOUNDS);
        for v in [1.0, 2.0, 2.0, 7.0, 100.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"1\"}"), Some("1"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"2\"}"), Some("3"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"6\"}"), Some("3"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"8\"}"), Some("4"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"32\"}"), Some("4"));
        assert_eq!(line(&out, "x_bucket{a=\"b\",le=\"+Inf\"}"), Some("5"));
        assert_eq!(line(&out, "x_sum{a=\"b\"}"), Some("112"));
        assert_eq!(line(&out, "x_count{a=\"b\"}"), Some("5"));
    }
}
