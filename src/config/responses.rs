//! The `responses:` section: the limits of the in-memory response store behind
//! `previous_response_id`, `item_reference` and `GET`/`DELETE /v1/responses/{id}`.
//!
//! ```yaml
//! responses:
//!   store_max_entries: 1000   # responses kept at most (0: keep none)
//!   store_max_bytes: 64MiB    # bytes of stored JSON at most (a number, or with B/KiB/MiB/GiB)
//!   store_ttl: 1h             # how long a response stays retrievable
//! ```
//!
//! Read strictly like every section (unknown keys and bad values are `path: message`
//! problems). The store is built when the gateway starts: a reload does not resize it.

use std::time::Duration;

use serde_yaml::Value as Yaml;

use super::numbers::{count, duration};
use super::raw::{Path, Problems, entries};

/// Largest `store_max_entries` / `store_max_bytes` accepted (keeps the store bounded even
/// when a config asks for more).
const MAX_ENTRIES: u64 = 10_000_000;
const MAX_BYTES: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesConfig {
    pub store_max_entries: usize,
    pub store_max_bytes: usize,
    pub store_ttl: Duration,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            store_max_entries: 1000,
            store_max_bytes: 64 * 1024 * 1024,
            store_ttl: Duration::from_secs(3600),
        }
    }
}

pub(super) fn read_responses(problems: &mut Problems, path: &Path, v: &Yaml) -> ResponsesConfig {
    let mut r = ResponsesConfig::default();
    for (key, val) in entries(problems, path, v) {
        let p = path.key(&key);
        match key.as_str() {
            "store_max_entries" => {
                if let Some(n) = count(problems, &p, val, 0, MAX_ENTRIES) {
                    r.store_max_entries = n;
                }
            }
            "store_max_bytes" => {
                if let Some(n) = bytes(problems, &p, val) {
                    r.store_max_bytes = n;
                }
            }
            "store_ttl" => {
                if let Some(d) = duration(problems, &p, val) {
                    r.store_ttl = d;
                }
            }
            _ => problems.unknown(&p),
        }
    }
    r
}

/// A byte count: an integer, or a string with a binary unit (`512KiB`, `64MiB`, `1GiB`, `100B`).
fn bytes(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<usize> {
    let Yaml::String(s) = v else {
        return count(problems, path, v, 0, MAX_BYTES);
    };
    let s = s.trim();
    let (digits, unit) = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, n)| s.strip_suffix(suffix).map(|d| (d.trim(), *n)))
    .unwrap_or((s, 1));
    let n = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n <= MAX_BYTES);
    match n.and_then(|n| usize::try_from(n).ok()) {
        Some(n) => Some(n),
        None => {
            problems.add(
                path,
                format!(
                    "expected a byte count up to {MAX_BYTES} (a number, or with B/KiB/MiB/GiB)"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> (ResponsesConfig, Vec<String>) {
        let mut problems = Problems::default();
        let v: Yaml = serde_yaml::from_str(yaml).unwrap();
        let r = read_responses(&mut problems, &Path::root("responses"), &v);
        (r, problems.into_result(()).err().unwrap_or_default())
    }

    #[test]
    fn defaults_units_and_problems() {
        assert_eq!(read("{}").0, ResponsesConfig::default());
        let (r, p) = read("{store_max_entries: 5, store_max_bytes: 2MiB, store_ttl: 90s}");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(r.store_max_entries, 5);
        assert_eq!(r.store_max_bytes, 2 << 20);
        assert_eq!(r.store_ttl, Duration::from_secs(90));
        assert_eq!(read("{store_max_bytes: 4096}").0.store_max_bytes, 4096);
        let (_, p) = read("{store_max_bytes: 2TB, store_ttl: 0, store_size: 1}");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().any(|m| m.contains("store_max_bytes")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("store_size: unknown")), "{p:?}");
    }
}
