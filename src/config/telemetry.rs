//! The `telemetry:` section: where OpenTelemetry traces go (OTLP/HTTP with JSON encoding).
//!
//! ```yaml
//! telemetry:
//!   otlp_endpoint: http://collector:4318   # spans are POSTed to {otlp_endpoint}/v1/traces
//!   headers: {x-api-key: ${OTLP_KEY}}      # sent with every export (values are secrets)
//!   service_name: aiproxy                  # the spans' `service.name`
//!   sample_ratio: 1.0                      # share of traces exported (0..1)
//! ```
//!
//! Read strictly like every section. Without `otlp_endpoint` here, the gateway falls back to
//! the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_SERVICE_NAME` variables (`telemetry::Exporter`).
//! The exporter is built when the gateway starts: a reload does not change it.

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

use super::numbers::number;
use super::raw::{Path, Problems, check_http_url, entries, header_map, non_empty};
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The collector's base URL (`/v1/traces` is appended); `None`: the environment decides.
    pub otlp_endpoint: Option<String>,
    pub headers: BTreeMap<String, Secret>,
    /// `None`: `OTEL_SERVICE_NAME`, else `aiproxy`.
    pub service_name: Option<String>,
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            headers: BTreeMap::new(),
            service_name: None,
            sample_ratio: 1.0,
        }
    }
}

pub(super) fn read_telemetry(problems: &mut Problems, path: &Path, v: &Yaml) -> TelemetryConfig {
    let mut t = TelemetryConfig::default();
    for (key, val) in entries(problems, path, v) {
        let p = path.key(&key);
        match key.as_str() {
            "otlp_endpoint" => {
                if let Some(s) = non_empty(problems, &p, val) {
                    let s = s.trim().trim_end_matches('/').to_string();
                    if check_http_url(problems, &p, &s) {
                        t.otlp_endpoint = Some(s);
                    }
                }
            }
            "headers" => t.headers = header_map(problems, &p, val),
            "service_name" => t.service_name = non_empty(problems, &p, val),
            "sample_ratio" => {
                if let Some(r) = number(problems, &p, val, 0.0, 1.0) {
                    t.sample_ratio = r;
                }
            }
            _ => problems.unknown(&p),
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use crate::config::{MapEnv, parse};

    #[test]
    fn telemetry_section_is_read_strictly() {
        let yaml = "backends: {m: {kind: mock}}\nassistants: [{name: a, backend: m}]\ntelemetry: {otlp_endpoint: 'http://c:4318/', headers: {x-k: v}, service_name: gw, sample_ratio: 0.5}\n";
        let t = parse(yaml, "t", &MapEnv::new()).unwrap().telemetry;
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://c:4318"));
        assert_eq!(t.headers["x-k"].expose(), "v");
        assert_eq!(t.service_name.as_deref(), Some("gw"));
        assert_eq!(t.sample_ratio, 0.5);
        let bad = "telemetry: {otlp_endpoint: 'ftp://x', sample_ratio: 2, extra: 1}\n";
        let err = parse(bad, "t", &MapEnv::new())
            .unwrap_err()
            .problems
            .join("\n");
        assert!(err.contains("telemetry.sample_ratio"), "{err}");
        assert!(err.contains("telemetry.extra"), "{err}");
        assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
    }
}
