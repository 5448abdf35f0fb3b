//! The admin check for `/admin/*` and `/metrics` (docs/auth-and-admin.md#the-admin-listener), separate from the `/v1/*` chain.
//!
//! Two listeners serve them, with different rules ([`Listener`]):
//! - the **main** listener (`/v1/*`): only `ADMIN_API_KEY` as `Authorization: Bearer <key>`
//!   (constant-time compare; a raw header without `Bearer `, `X-API-Key`, `?apikey=` and proxy
//!   keys are not). Without a key it answers 401: never keyless, never "trusted because
//!   loopback" - behind a reverse proxy on the same host every request is a loopback peer.
//! - the **admin** listener (`admin.listen`, default `127.0.0.1:8001`): with `ADMIN_API_KEY`
//!   set, the Bearer key from any peer. Without it, keyless access for loopback peers only,
//!   and only when the `Host` is `localhost`, `127.0.0.1` or `[::1]` (any port) and no `Origin`
//!   header is present: a web page that rebinds a DNS name to 127.0.0.1 sends its own name as
//!   `Host` and its origin as `Origin`, so it is refused (403).
//!
//! The original project left the admin API open to everyone by default, and its PUT of a stdio
//! MCP server runs a command - remote code execution. Immutable; shared by all worker threads;
//! no I/O.

use std::net::IpAddr;

use super::bearer_token;
use crate::http::Request;
use crate::secret::{Secret, constant_time_eq};

/// How `/admin/*` is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// `ADMIN_API_KEY` is set: Bearer only.
    Key(Secret),
    /// No key: the admin listener serves local clients (loopback peer, local `Host`, no
    /// `Origin`); the main listener refuses every admin request.
    LoopbackOnly,
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.listen`: the OpenAI API; admin only with the key.
    Main,
    /// `admin.listen`: admin API, `/metrics`, `/health`.
    Admin,
}

/// Why an admin request was refused (answered as mapped in [`crate::error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminError {
    /// A key is configured and the request did not carry it as a Bearer token: 401.
    Unauthorized,
    /// No key is configured and the request came in on the main listener: 401.
    NoKeyOnMain,
    /// No key is configured and the peer is not loopback: 403.
    Forbidden,
    /// Keyless on the admin listener with a `Host` that is not a loopback name: 403.
    ForeignHost,
    /// Keyless on the admin listener with an `Origin` header (a browser page): 403.
    CrossOrigin,
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminError::Unauthorized => "invalid or missing admin key",
            AdminError::NoKeyOnMain => "no ADMIN_API_KEY: admin is on the admin listener only",
            AdminError::Forbidden => "admin listener is loopback only (ADMIN_API_KEY not set)",
            AdminError::ForeignHost => "foreign Host on the admin listener",
            AdminError::CrossOrigin => "Origin header on the admin listener",
        })
    }
}

impl std::error::Error for AdminError {}

impl AdminAuth {
    /// From the value of `ADMIN_API_KEY`; unset, empty or all-whitespace means no key.
    /// Surrounding whitespace (a trailing newline from a secrets file) is dropped: a Bearer
    /// token is read trimmed, so such a key could never match.
    pub fn from_env_value(value: Option<Secret>) -> AdminAuth {
        match value.map(|k| k.expose().trim().to_string()) {
            Some(k) if !k.is_empty() => AdminAuth::Key(Secret::new(k)),
            _ => AdminAuth::LoopbackOnly,
        }
    }

    pub fn check(&self, req: &Request, on: Listener) -> Result<(), AdminError> {
        let result = match (self, on) {
            (AdminAuth::Key(key), _) => {
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
            (AdminAuth::LoopbackOnly, Listener::Main) => Err(AdminError::NoKeyOnMain),
            (AdminAuth::LoopbackOnly, Listener::Admin) => local_only(req),
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

/// Keyless admin: loopback peer, loopback `Host`, no `Origin`.
fn local_only(req: &Request) -> Result<(), AdminError> {
    if !is_loopback(req.peer.ip()) {
        return Err(AdminError::Forbidden);
    }
    if !req.header("Host").is_some_and(is_local_host) {
        return Err(AdminError::ForeignHost);
    }
    if req.header("Origin").is_some() {
        return Err(AdminError::CrossOrigin);
    }
    Ok(())
}

/// `localhost`, `127.0.0.1` or `[::1]`, each with or without a port.
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, "")) => inner,
            Some((inner, port)) if port.strip_prefix(':').is_some_and(valid_port) => inner,
            _ => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "::1"
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
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
    use crate::error::{ApiError, ErrorKind};

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

    const LOCAL: (&str, &str) = ("Host", "127.0.0.1:8001");

    #[test]
    fn without_a_key_only_local_clients_of_the_admin_listener_pass() {
        let a = AdminAuth::from_env_value(None);
        assert_eq!(a, AdminAuth::LoopbackOnly);
        let admin = |peer: &str, h: &[(&str, &str)]| a.check(&req(peer, h, ""), Listener::Admin);
        assert_eq!(admin("127.0.0.1:5000", &[LOCAL]), Ok(()));
        assert_eq!(admin("[::1]:5000", &[("Host", "[::1]:8001")]), Ok(()));
        assert_eq!(
            admin("[::ffff:127.0.0.1]:5000", &[("Host", "localhost")]),
            Ok(())
        );
        assert_eq!(
            admin("10.1.2.3:5000", &[LOCAL, ("Authorization", "Bearer x")]),
            Err(AdminError::Forbidden)
        );
        assert_eq!(
            admin("[::ffff:10.1.2.3]:5000", &[LOCAL]),
            Err(AdminError::Forbidden)
        );
        // DNS rebinding: a foreign name, or any Origin, from loopback.
        assert_eq!(
            admin("127.0.0.1:5000", &[("Host", "evil.example")]),
            Err(AdminError::ForeignHost)
        );
        assert_eq!(admin("127.0.0.1:5000", &[]), Err(AdminError::ForeignHost));
        assert_eq!(
            admin(
                "127.0.0.1:5000",
                &[LOCAL, ("Origin", "http://evil.example")]
            ),
            Err(AdminError::CrossOrigin)
        );
        let forbidden = ApiError::from(AdminError::Forbidden);
        assert_eq!(forbidden.status, 403);
        assert!(forbidden.message.contains("ADMIN_API_KEY"));
        // The main listener never answers keyless, loopback or not.
        let main = a.check(&req("127.0.0.1:5000", &[LOCAL], ""), Listener::Main);
        assert_eq!(main, Err(AdminError::NoKeyOnMain));
        assert_eq!(ApiError::from(AdminError::NoKeyOnMain).status, 401);
    }

    #[test]
    fn local_host_names() {
        for h in [
            "localhost",
            "LOCALHOST:8001",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8001",
        ] {
            assert!(is_local_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.2",
            "[::1]8001",
            "localhost:",
            "localhost:99999",
            "localhost:80:80",
            "[::2]",
        ] {
            assert!(!is_local_host(h), "{h}");
        }
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
        assert_eq!(a.check(&r, Listener::Main), Ok(()));
    }

    #[test]
    fn with_a_key_only_the_bearer_token_passes() {
        let a = AdminAuth::from_env_value(Some(Secret::new("adm-key")));
        // A key applies to every peer, loopback included.
        for (peer, on) in [
            ("127.0.0.1:1", Listener::Main),
            ("10.0.0.1:1", Listener::Main),
            ("[::1]:1", Listener::Admin),
            ("10.0.0.1:1", Listener::Admin),
        ] {
            let ok = |h: &[(&str, &str)]| a.check(&req(peer, h, ""), on).is_ok();
            assert!(ok(&[("Authorization", "Bearer adm-key")]));
            assert!(ok(&[("authorization", "bearer  adm-key")]));
            assert!(!ok(&[]));
            assert!(
                !ok(&[("Host", "localhost")]),
                "a key applies to local clients too"
            );
            assert!(
                !ok(&[("Authorization", "adm-key")]),
                "raw header without Bearer"
            );
            assert!(!ok(&[("Authorization", "Basic adm-key")]));
            assert!(!ok(&[("Authorization", "Bearer adm-ke")]));
            assert!(!ok(&[("Authorization", "Bearer adm-key2")]));
            assert!(!ok(&[("X-API-Key", "adm-key")]));
        }
        let by_query = a.check(&req("127.0.0.1:1", &[], "apikey=adm-key"), Listener::Admin);
        assert_eq!(by_query, Err(AdminError::Unauthorized));
        let e = ApiError::from(AdminError::Unauthorized);
        assert_eq!((e.status, e.kind), (401, ErrorKind::Authentication));
        assert!(!e.message.contains("adm-key"));
    }
}
