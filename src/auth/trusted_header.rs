//! Apiman `trusted_header`: the Apiman gateway in front of aiproxy injects a shared secret in a
//! named header (an "Add Header" policy); a request carrying it is trusted. The value is
//! compared in constant time. A misconfigured provider (no header name or no secret) rejects
//! everything rather than opening the gateway. Immutable; shared by all worker threads.

use super::{ApiKey, Provider, Verdict};
use crate::config::ApimanConfig;
use crate::http::Request;
use crate::secret::{Secret, constant_time_eq};

pub(super) struct TrustedHeader {
    /// `None` when the config lacks the header or the secret (fail closed).
    expected: Option<(String, Secret)>,
}

impl TrustedHeader {
    pub(super) fn new(cfg: &ApimanConfig) -> TrustedHeader {
        let header = cfg
            .header
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty());
        let secret = cfg.secret.as_ref().filter(|s| !s.is_empty());
        let expected = match (header, secret) {
            (Some(h), Some(s)) => Some((h.to_string(), s.clone())),
            _ => {
                log::error!(
                    "auth: apiman trusted_header needs both `header` and `secret`; rejecting every request it would check"
                );
                None
            }
        };
        TrustedHeader { expected }
    }
}

impl Provider for TrustedHeader {
    fn name(&self) -> &'static str {
        "apiman_trusted_header"
    }

    fn check(&self, req: &Request, _keys: &[ApiKey]) -> Verdict {
        let Some((header, secret)) = &self.expected else {
            return Verdict::Reject;
        };
        match req.header(header) {
            None => Verdict::NoCredential,
            Some(v) if constant_time_eq(v.as_bytes(), secret.expose().as_bytes()) => {
                Verdict::Accept
            }
            Some(_) => Verdict::Reject,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::request;
    use crate::config::ApimanMode;

    fn cfg(header: Option<&str>, secret: Option<&str>) -> ApimanConfig {
        ApimanConfig {
            enabled: true,
            mode: ApimanMode::TrustedHeader,
            header: header.map(String::from),
            secret: secret.map(Secret::new),
            ..ApimanConfig::default()
        }
    }

    #[test]
    fn header_must_carry_the_secret() {
        let p = TrustedHeader::new(&cfg(Some("X-Apiman-Gateway-Token"), Some("s3cret")));
        let check = |h: &[(&str, &str)]| p.check(&request(h, ""), &[]);
        assert_eq!(
            check(&[("x-apiman-gateway-token", "s3cret")]),
            Verdict::Accept
        );
        assert_eq!(
            check(&[("X-Apiman-Gateway-Token", "s3cre")]),
            Verdict::Reject
        );
        assert_eq!(
            check(&[("X-Apiman-Gateway-Token", "s3cret2")]),
            Verdict::Reject
        );
        assert_eq!(check(&[("X-Apiman-Gateway-Token", "")]), Verdict::Reject);
        assert_eq!(
            check(&[("X-Apiman-Gateway-Token", "\u{fffd}")]),
            Verdict::Reject
        );
        assert_eq!(
            check(&[("Authorization", "Bearer s3cret")]),
            Verdict::NoCredential
        );
    }

    #[test]
    fn misconfigured_fails_closed() {
        for c in [
            cfg(None, Some("s")),
            cfg(Some("X-T"), None),
            cfg(Some("X-T"), Some("")),
            cfg(Some(" "), Some("s")),
        ] {
            let p = TrustedHeader::new(&c);
            assert_eq!(p.check(&request(&[("X-T", "")], ""), &[]), Verdict::Reject);
            assert_eq!(p.check(&request(&[("X-T", "s")], ""), &[]), Verdict::Reject);
        }
    }
}
