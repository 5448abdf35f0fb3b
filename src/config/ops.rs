//! The operations sections of the config: `proxy_api_keys` (plain strings or objects with a
//! name, assistant scopes and `rpm`/`tpm` limits) and `audit` (the tool audit log). Read
//! strictly like the rest (every problem as `path: message`); pure functions, no I/O.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_yaml::Value as Yaml;

use super::numbers::{count, integer};
use super::raw::{Path, Problems, boolean, elements, entries, name_list, non_empty, text};
use super::{AuditConfig, ProxyKey};
use crate::secret::Secret;

/// Requests or tokens per minute a key may be given (a bound that keeps the bucket arithmetic
/// exact in `f64`).
const MAX_PER_MINUTE: u64 = 1 << 40;

/// `proxy_api_keys`: each entry a key (`"sk-…"`, named `key-<n>` after its 1-based position)
/// or `{name, key, assistants, rpm, tpm}`. Entries whose key is empty or blank are dropped, so
/// `- ${PROXY_API_KEY:-}` with the variable unset does not switch auth on. Names must be valid
/// names and unique (they are metrics labels and audit-log fields).
pub(super) fn read_keys(problems: &mut Problems, path: &Path, v: &Yaml) -> Vec<ProxyKey> {
    let mut out: Vec<ProxyKey> = Vec::new();
    let mut names = HashSet::new();
    for (i, item) in elements(problems, path, v).iter().enumerate() {
        let p = path.index(i);
        let key = match item {
            Yaml::Mapping(_) => read_key_object(problems, &p, item, i),
            other => text(problems, &p, other).map(|k| ProxyKey::plain(i, k)),
        };
        let Some(key) = key else { continue };
        if key.key.expose().trim().is_empty() {
            continue;
        }
        if !names.insert(key.name.clone()) {
            problems.add(&p, format!("duplicate key name '{}'", key.name));
            continue;
        }
        out.push(key);
    }
    out
}

fn read_key_object(problems: &mut Problems, path: &Path, v: &Yaml, i: usize) -> Option<ProxyKey> {
    let mut k = ProxyKey::plain(i, String::new());
    let mut has_key = false;
    for (field, val) in entries(problems, path, v) {
        let p = path.key(&field);
        match field.as_str() {
            "name" => {
                if let Some(n) = non_empty(problems, &p, val) {
                    if super::valid_name(&n) {
                        k.name = n;
                    } else {
                        problems.add(&p, format!("invalid name: {}", super::NAME_RULE));
                    }
                }
            }
            "key" => {
                has_key = true;
                k.key = Secret::new(text(problems, &p, val).unwrap_or_default());
            }
            "assistants" => k.assistants = Some(name_list(problems, &p, val)),
            "rpm" => k.rpm = integer(problems, &p, val, 1, MAX_PER_MINUTE),
            "tpm" => k.tpm = integer(problems, &p, val, 1, MAX_PER_MINUTE),
            _ => problems.unknown(&p),
        }
    }
    if !has_key {
        problems.missing(&path.key("key"));
        return None;
    }
    Some(k)
}

/// `audit: {path, max_bytes, keep, include_arguments}`; `path` is required.
pub(super) fn read_audit(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<AuditConfig> {
    if v.is_null() {
        return None;
    }
    let mut a = AuditConfig {
        path: PathBuf::new(),
        max_bytes: AuditConfig::DEFAULT_MAX_BYTES,
        keep: AuditConfig::DEFAULT_KEEP,
        include_arguments: false,
    };
    let mut has_path = false;
    for (field, val) in entries(problems, path, v) {
        let p = path.key(&field);
        match field.as_str() {
            "path" => {
                if let Some(s) = non_empty(problems, &p, val) {
                    a.path = PathBuf::from(s.trim());
                    has_path = true;
                }
            }
            "max_bytes" => {
                if let Some(n) = integer(problems, &p, val, 4096, u64::MAX) {
                    a.max_bytes = n;
                }
            }
            "keep" => {
                if let Some(n) = count(problems, &p, val, 0, 1000) {
                    a.keep = n;
                }
            }
            "include_arguments" => {
                if let Some(b) = boolean(problems, &p, val) {
                    a.include_arguments = b;
                }
            }
            _ => problems.unknown(&p),
        }
    }
    if !has_path {
        problems.missing(&path.key("path"));
        return None;
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use crate::config::{MapEnv, parse};

    #[test]
    fn keys_plain_and_objects() {
        let yaml = "backends: {m: {kind: mock}}\nassistants: [{name: a, backend: m}]\nproxy_api_keys:\n  - plain-1\n  - {name: team-a, key: sk-a, assistants: ['demo*'], rpm: 60, tpm: 1000}\n  - ''\n  - {key: sk-c}\n";
        let cfg = parse(yaml, "t", &MapEnv::new()).unwrap();
        let k = &cfg.proxy_api_keys;
        assert_eq!(k.len(), 3);
        assert_eq!(
            (k[0].name.as_str(), k[0].key.expose()),
            ("key-1", "plain-1")
        );
        assert_eq!(k[0].assistants, None);
        assert_eq!(k[1].name, "team-a");
        assert_eq!(k[1].assistants.as_deref(), Some(&["demo*".to_string()][..]));
        assert_eq!((k[1].rpm, k[1].tpm), (Some(60), Some(1000)));
        assert_eq!(k[2].name, "key-4");
    }

    #[test]
    fn key_problems_are_reported() {
        let yaml = "proxy_api_keys:\n  - {name: 'bad name', key: x}\n  - {name: n}\n  - {name: d, key: a, rpm: 0, tpm: -1, extra: 1}\n  - {name: d, key: b}\n";
        let err = parse(yaml, "t", &MapEnv::new())
            .unwrap_err()
            .problems
            .join("\n");
        for want in [
            "proxy_api_keys[0].name: invalid name",
            "proxy_api_keys[1].key",
            "proxy_api_keys[2].rpm: must be at least 1",
            "proxy_api_keys[2].tpm",
            "proxy_api_keys[2].extra: unknown field",
            "proxy_api_keys[3]: duplicate key name 'd'",
        ] {
            assert!(err.contains(want), "{want} not in:\n{err}");
        }
    }

    #[test]
    fn audit_section() {
        let yaml =
            "audit: {path: /tmp/a.log, max_bytes: 10000, keep: 2, include_arguments: true}\n";
        let a = parse(yaml, "t", &MapEnv::new()).unwrap().audit.unwrap();
        assert_eq!(a.path.to_str(), Some("/tmp/a.log"));
        assert_eq!((a.max_bytes, a.keep, a.include_arguments), (10000, 2, true));
        let err = parse("audit: {max_bytes: 1}\n", "t", &MapEnv::new()).unwrap_err();
        let err = err.problems.join("\n");
        assert!(
            err.contains("audit.max_bytes: must be at least 4096"),
            "{err}"
        );
        assert!(err.contains("audit.path"), "{err}");
    }
}
