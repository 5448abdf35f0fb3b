//! The admin check for `/admin/*` and `/metrics` (SPEC §8), separate from the `/v1/*` chain.
//!
//! With `ADMIN_API_KEY` set, only `Authorization: Bearer <key>` is accepted (constant-time
//! compare; a raw header without `Bearer `, `X-API-Key`, `?apikey=` and proxy keys are not).
//! Without it, the admin API answers loopback peers only: the original left it open to
//! everyone by default, and its PUT of a stdio MCP server runs a command — remote code
//! execution. Immutable; shared by all worker threads; no I/O.

use std::net::IpAddr;

use super::bearer_token;
use crate::error::ApiError;
use crate::secret::{Secret, constant_time_eq};
use crate::server::http::Request;

/// How `/admin/*` is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// `ADMIN_API_KEY` is set: Bearer only.
    Key(Secret),
    /// No key: loopback peers only.
    LoopbackOnly,
}

/// Why an admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminError {
    /// A key is configured and the request did not carry it as a Bearer token: 401.
    Unauthorized,
    /// No key is configured and the peer is not loopback: 403.
    Forbidden,
}

impl AdminError {
    pub fn status(&self) -> u16 {
        match self {
            AdminError::Unauthorized => 401,
            AdminError::Forbidden => 403,
        }
    }

    /// The client-facing error; the route adds `WWW-Authenticate: Bearer` to the 401.
    pub fn api_error(&self) -> ApiError {
        match self {
            AdminError::Unauthorized => ApiError::new(
                401,
                "authentication_error",
                "invalid or missing admin key (send Authorization: Bearer <ADMIN_API_KEY>)",
            )
            .with_code("invalid_api_key"),
            AdminError::Forbidden => ApiError::new(
                403,
                "permission_error",
                "the admin API answers loopback clients only; set ADMIN_API_KEY and send it as Authorization: Bearer <key> to use it remotely",
            )
            .with_code("admin_loopback_only"),
        }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminError::Unauthorized => "invalid or missing admin key",
            AdminError::Forbidden => "admin API is loopback only (ADMIN_API_KEY not set)",
        })
    }
}

impl std::error::Error for AdminError {}

impl AdminAuth {
    /// From the value of `ADMIN_API_KEY`; unset, empty or all-whitespace means loopback only.
    /// Surrounding whitespace (a trailing newline from a secrets file) is dropped: a Bearer
    /// token is read trimmed, so such a key could never match.
    pub fn from_env_value(value: Option<Secret>) -> AdminAuth {
        match value.map(|k| k.expose().trim().to_string()) {
            Some(k) if !k.is_empty() => AdminAuth::Key(Secret::new(k)),
            _ => AdminAuth::LoopbackOnly,
        }
    }

    pub fn check(&self, req: &Request) -> Result<(), AdminError> {
        let result = match self {
            AdminAuth::Key(key) => {
                let given = req
                    .header("Authorization")
                    .and_then(bearer_token)
                    .unwrap_or("");
                if constant_time_eq(given.as_bytes(), key.expose().as_bytes()) {
                    Ok(())
                } else {
                    Err(AdminError::Unauthorized)
                }
            }
            AdminAuth::LoopbackOnly if is_loopback(req.peer.ip()) => Ok(()),
            AdminAuth::LoopbackOnly => Err(AdminError::Forbidden),
        };
        match &result {
            Ok(()) => log::debug!("admin auth: {} {}: allowed", req.method, req.path),
            Err(e) => log::debug!(
                "admin auth: {} {} from {}: refused ({e})",
                req.method,
                req.path,
                req.peer.ip()
            ),
        }
        result
    }
}

/// 127.0.0.0/8, `::1` and IPv4-mapped loopback (`::ffff:127.x.y.z`, what a dual-stack listener
/// reports for an IPv4 loopback client).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::request_from;

    fn req(peer: &str, headers: &[(&str, &str)], query: &str) -> Request {
        request_from(peer.parse().unwrap(), headers, query)
    }

    #[test]
    fn loopback_rule() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:127.1.2.3",
        ] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "192.168.1.2",
            "0.0.0.0",
            "::",
            "::ffff:10.0.0.1",
            "fe80::1",
            "2001:db8::1",
            // IPv4-compatible (deprecated) form is not the mapped form: not loopback.
            "::127.0.0.1",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn without_a_key_only_loopback_peers_pass() {
        let a = AdminAuth::from_env_value(None);
        assert_eq!(a, AdminAuth::LoopbackOnly);
        assert_eq!(a.check(&req("127.0.0.1:5000", &[], "")), Ok(()));
        assert_eq!(a.check(&req("[::1]:5000", &[], "")), Ok(()));
        assert_eq!(a.check(&req("[::ffff:127.0.0.1]:5000", &[], "")), Ok(()));
        let remote = a.check(&req("10.1.2.3:5000", &[("Authorization", "Bearer x")], ""));
        assert_eq!(remote, Err(AdminError::Forbidden));
        assert_eq!(
            a.check(&req("[::ffff:10.1.2.3]:5000", &[], "")),
            Err(AdminError::Forbidden)
        );
        let e = AdminError::Forbidden.api_error();
        assert_eq!(e.status, 403);
        assert!(e.message.contains("ADMIN_API_KEY"));
    }

    #[test]
    fn empty_env_value_means_no_key() {
        for v in [Some(Secret::new("")), Some(Secret::new("  ")), None] {
            assert_eq!(AdminAuth::from_env_value(v), AdminAuth::LoopbackOnly);
        }
    }

    #[test]
    fn key_from_a_secrets_file_is_trimmed() {
        let a = AdminAuth::from_env_value(Some(Secret::new(" adm-key\n")));
        assert_eq!(a, AdminAuth::Key(Secret::new("adm-key")));
        let r = req("10.0.0.1:1", &[("Authorization", "Bearer adm-key")], "");
        assert_eq!(a.check(&r), Ok(()));
    }

    #[test]
    fn with_a_key_only_the_bearer_token_passes() {
        let a = AdminAuth::from_env_value(Some(Secret::new("adm-key")));
        // A key applies to every peer, loopback included.
        for peer in ["127.0.0.1:1", "10.0.0.1:1", "[::1]:1"] {
            let ok = |h: &[(&str, &str)]| a.check(&req(peer, h, "")).is_ok();
            assert!(ok(&[("Authorization", "Bearer adm-key")]));
            assert!(ok(&[("authorization", "bearer  adm-key")]));
            assert!(!ok(&[]));
            assert!(
                !ok(&[("Authorization", "adm-key")]),
                "raw header without Bearer"
            );
            assert!(!ok(&[("Authorization", "Basic adm-key")]));
            assert!(!ok(&[("Authorization", "Bearer adm-ke")]));
            assert!(!ok(&[("Authorization", "Bearer adm-key2")]));
            assert!(!ok(&[("X-API-Key", "adm-key")]));
        }
        let by_query = a.check(&req("127.0.0.1:1", &[], "apikey=adm-key"));
        assert_eq!(by_query, Err(AdminError::Unauthorized));
        let e = AdminError::Unauthorized.api_error();
        assert_eq!((e.status, e.kind), (401, "authentication_error"));
        assert!(!e.message.contains("adm-key"));
    }
}
