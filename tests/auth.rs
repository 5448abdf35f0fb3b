//! The `/v1/*` auth chain against the in-tree fake Apiman gateway: what is probed, what is
//! cached, what is not, and how long a request can wait.

use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use aiproxy::auth::{Auth, AuthError};
use aiproxy::config::{self, Config};
use aiproxy::http::{Request, Version};

use crate::support::fake_apiman::{Answer, FakeApiman};
use crate::support::gateway::TestEnv;

const PREFIX: &str = "/apiman-gateway";
const PROBE_PATH: &str = "/apiman-gateway/aiproxy/authcheck/1.0/health";
const KEY_HEADER: &str = "X-Gateway-Key";

fn fake() -> FakeApiman {
    FakeApiman::start(PROBE_PATH, KEY_HEADER)
}

/// A config with Apiman `gateway_probe` against `gw` and optional static keys.
fn probe_config(gw: &FakeApiman, ttl: &str, timeout: &str, static_keys: &[&str]) -> Config {
    let keys: Vec<String> = static_keys.iter().map(|k| format!("'{k}'")).collect();
    let yaml = format!(
        "proxy_api_keys: [{}]
apiman:
  enabled: true
  mode: gateway_probe
  gateway_url: {}/
  probe_api: /aiproxy/authcheck/1.0/
  probe_path: /health
  api_key_header: {KEY_HEADER}
  cache_ttl: {ttl}
  timeout: {timeout}
",
        keys.join(", "),
        gw.url(PREFIX),
    );
    config::parse(&yaml, "test", &TestEnv::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn request(headers: &[(&str, &str)], query: &str) -> Request {
    let peer: SocketAddr = "10.0.0.9:50000".parse().unwrap();
    Request {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        query: query.into(),
        version: Version::Http11,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        peer,
    }
}

fn bearer(key: &str) -> Request {
    request(&[("Authorization", &format!("Bearer {key}"))], "")
}

#[test]
fn valid_key_is_probed_once_then_served_from_cache() {
    let gw = fake();
    gw.answer("sk-good", Answer::Status(200));
    let auth = Auth::from_config(&probe_config(&gw, "60s", "2s", &[]));
    assert_eq!(auth.provider_names(), vec!["apiman_gateway_probe"]);
    assert_eq!(auth.check(&bearer("sk-good")), Ok(()));
    assert_eq!(auth.check(&bearer("sk-good")), Ok(()));
    // The same key by another route is the same cache entry.
    assert_eq!(
        auth.check(&request(&[("X-API-Key", "sk-good")], "")),
        Ok(())
    );
    assert_eq!(auth.check(&request(&[], "apikey=sk%2Dgood")), Ok(()));
    assert_eq!(gw.probes("sk-good"), 1);
    // The probe used the normalized path and carried the key only in the configured header.
    assert_eq!(gw.misdirected(), 0);
    assert_eq!(gw.keyless(), 0);
    let seen = gw.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, PROBE_PATH);
    let carrying: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(_, v)| v.contains("sk-good"))
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    assert_eq!(carrying, vec![KEY_HEADER.to_ascii_lowercase()]);
}

#[test]
fn gateway_503_is_not_cached() {
    let gw = fake();
    gw.answer("sk-flaky", Answer::Status(503));
    let auth = Auth::from_config(&probe_config(&gw, "60s", "2s", &[]));
    assert_eq!(auth.check(&bearer("sk-flaky")), Err(AuthError::Unavailable));
    assert_eq!(auth.check(&bearer("sk-flaky")), Err(AuthError::Unavailable));
    assert_eq!(gw.probes("sk-flaky"), 2, "a 503 must not be cached");
    // The gateway recovers: the key works at once, and that answer is cached.
    gw.answer("sk-flaky", Answer::Status(200));
    assert_eq!(auth.check(&bearer("sk-flaky")), Ok(()));
    assert_eq!(auth.check(&bearer("sk-flaky")), Ok(()));
    assert_eq!(gw.probes("sk-flaky"), 3);
    // Other non-auth statuses are not answers either.
    for (key, status) in [
        ("sk-500", 500),
        ("sk-404", 404),
        ("sk-302", 302),
        ("sk-429", 429),
    ] {
        gw.answer(key, Answer::Status(status));
        assert_eq!(
            auth.check(&bearer(key)),
            Err(AuthError::Unavailable),
            "{status}"
        );
        assert_eq!(
            auth.check(&bearer(key)),
            Err(AuthError::Unavailable),
            "{status}"
        );
        assert_eq!(gw.probes(key), 2, "{status}");
    }
}

#[test]
fn rejections_are_cached_for_the_ttl() {
    let gw = fake();
    gw.answer("sk-forbidden", Answer::Status(403));
    // No answer set: the fake says 401.
    let auth = Auth::from_config(&probe_config(&gw, "2s", "2s", &[]));
    let started = Instant::now();
    for key in ["sk-unknown", "sk-forbidden"] {
        assert_eq!(auth.check(&bearer(key)), Err(AuthError::Invalid));
        assert_eq!(auth.check(&bearer(key)), Err(AuthError::Invalid));
        assert_eq!(gw.probes(key), 1, "{key}: second check must hit the cache");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "test too slow to be meaningful: the 2 s TTL may have passed"
    );
    // After the TTL the key is probed again (it may have been created meanwhile).
    gw.answer("sk-unknown", Answer::Status(200));
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(started.elapsed()));
    assert_eq!(auth.check(&bearer("sk-unknown")), Ok(()));
    assert_eq!(gw.probes("sk-unknown"), 2);
}

#[test]
fn slow_gateway_times_out_in_time_and_is_not_cached() {
    let gw = fake();
    gw.answer("sk-slow", Answer::Slow(Duration::from_secs(5), 200));
    let auth = Auth::from_config(&probe_config(&gw, "60s", "500ms", &[]));
    let t = Instant::now();
    assert_eq!(auth.check(&bearer("sk-slow")), Err(AuthError::Unavailable));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    // The gateway answers after 5 s; the bound is twice the 500 ms timeout plus 1 s.
    assert!(
        took < Duration::from_secs(2),
        "probe timeout not enforced: {took:?}"
    );
    assert_eq!(auth.check(&bearer("sk-slow")), Err(AuthError::Unavailable));
    assert_eq!(gw.probes("sk-slow"), 2, "a timeout must not be cached");
    // Several candidates on a hanging gateway still cost one timeout, not one each.
    gw.answer("sk-slow2", Answer::Slow(Duration::from_secs(5), 200));
    let two = request(
        &[
            ("Authorization", "Bearer sk-slow2"),
            ("X-API-Key", "sk-slow3"),
        ],
        "",
    );
    let t = Instant::now();
    assert_eq!(auth.check(&two), Err(AuthError::Unavailable));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The event that shows it: the second candidate was never probed.
    assert_eq!(gw.probes("sk-slow3"), 0);
}

#[test]
fn concurrent_requests_with_one_key_share_one_probe() {
    let gw = fake();
    gw.answer("sk-busy", Answer::Slow(Duration::from_millis(400), 200));
    let auth = Auth::from_config(&probe_config(&gw, "60s", "3s", &[]));
    let n = 8;
    let barrier = Barrier::new(n);
    let results: Vec<Result<(), AuthError>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    auth.check(&bearer("sk-busy"))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(gw.probes("sk-busy"), 1);
}

#[test]
fn static_keys_and_apiman_together() {
    let gw = fake();
    gw.answer("sk-apiman", Answer::Status(200));
    gw.answer("sk-down", Answer::Status(503));
    let auth = Auth::from_config(&probe_config(&gw, "60s", "2s", &["sk-static"]));
    assert_eq!(
        auth.provider_names(),
        vec!["static", "apiman_gateway_probe"]
    );
    // A static key never costs a probe.
    assert_eq!(auth.check(&bearer("sk-static")), Ok(()));
    assert_eq!(gw.total_probes(), 0);
    assert_eq!(
        auth.check(&request(&[("X-API-Key", "sk-apiman")], "")),
        Ok(())
    );
    assert_eq!(auth.check(&bearer("sk-nobody")), Err(AuthError::Invalid));
    assert_eq!(auth.check(&request(&[], "")), Err(AuthError::Missing));
    assert_eq!(gw.total_probes(), 2);
    // A down gateway does not lock out static keys, even next to an unverifiable key.
    let both = request(
        &[
            ("Authorization", "Bearer sk-down"),
            ("X-API-Key", "sk-static"),
        ],
        "",
    );
    assert_eq!(auth.check(&both), Ok(()));
    assert_eq!(auth.check(&bearer("sk-down")), Err(AuthError::Unavailable));
    // Candidates are probed in order until one is valid.
    let two = request(
        &[
            ("Authorization", "Bearer sk-nobody2"),
            ("X-API-Key", "sk-apiman"),
        ],
        "",
    );
    assert_eq!(auth.check(&two), Ok(()));
    assert_eq!(gw.probes("sk-nobody2"), 1);
    assert_eq!(gw.probes("sk-apiman"), 1);
    assert_eq!(gw.misdirected(), 0);
}

#[test]
fn unsendable_keys_never_reach_the_gateway() {
    let gw = fake();
    let auth = Auth::from_config(&probe_config(&gw, "60s", "2s", &[]));
    for q in [
        "apikey=a%0D%0AX-Injected:%201",
        "apikey=%FF%FE",
        "apikey=caf%C3%A9",
        "apikey=a%20b",
    ] {
        assert_eq!(auth.check(&request(&[], q)), Err(AuthError::Invalid), "{q}");
    }
    assert_eq!(gw.seen().len(), 0);
}

#[test]
fn reload_with_the_same_probe_keeps_the_cache() {
    let gw = fake();
    gw.answer("sk-good", Answer::Status(200));
    let cfg = probe_config(&gw, "60s", "2s", &[]);
    let auth = Auth::from_config(&cfg);
    assert_eq!(auth.check(&bearer("sk-good")), Ok(()));
    // A reload that only adds a static key and changes the timeout keeps the cached answer.
    let reloaded = auth.rebuild(&probe_config(&gw, "60s", "3s", &["sk-static"]));
    assert_eq!(reloaded.check(&bearer("sk-good")), Ok(()));
    assert_eq!(gw.probes("sk-good"), 1);
    // A different TTL is a different cache: the key is probed again.
    let changed = reloaded.rebuild(&probe_config(&gw, "30s", "3s", &[]));
    assert_eq!(changed.check(&bearer("sk-good")), Ok(()));
    assert_eq!(gw.probes("sk-good"), 2);
}

mod through_the_gateway {
    //! The chain wired into the routes: `/v1/*` guarded, `/health` open, admin separate.

    use crate::support::gateway::{TestGateway, request};

    const YAML: &str = "backends:\n  b: {kind: mock}\nassistants:\n  - {name: a, backend: b}\nproxy_api_keys: [\"k-123\", \"${UNSET_KEY:-}\"]\n";

    fn get(
        gw: &TestGateway,
        path: &str,
        headers: &[(&str, &str)],
    ) -> crate::support::gateway::Response {
        request(gw.addr, "GET", path, headers, b"")
    }

    #[test]
    fn v1_needs_a_key_from_any_of_the_three_places() {
        let gw = TestGateway::start(YAML);
        let r = get(&gw, "/v1/models", &[]);
        assert_eq!(r.status, 401);
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        assert_eq!(
            get(&gw, "/v1/models", &[("Authorization", "Bearer wrong")]).status,
            401
        );
        assert!(
            !get(&gw, "/v1/models", &[("Authorization", "Bearer wrong")])
                .text()
                .contains("wrong"),
            "key not echoed"
        );
        assert_eq!(
            get(&gw, "/v1/models", &[("Authorization", "Bearer k-123")]).status,
            200
        );
        assert_eq!(
            get(&gw, "/v1/models", &[("X-API-Key", "k-123")]).status,
            200
        );
        assert_eq!(get(&gw, "/v1/models?apikey=k-123", &[]).status, 200);
        let body = br#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            request(gw.addr, "POST", "/v1/chat/completions", &[], body).status,
            401
        );
        assert_eq!(
            request(
                gw.addr,
                "POST",
                "/v1/chat/completions",
                &[("Authorization", "Bearer k-123")],
                body
            )
            .status,
            200
        );
        assert_eq!(get(&gw, "/health", &[]).status, 200, "health stays open");
    }

    #[test]
    fn an_empty_key_entry_does_not_switch_auth_on() {
        let gw = TestGateway::start(
            "backends:\n  b: {kind: mock}\nassistants:\n  - {name: a, backend: b}\nproxy_api_keys: [\"${UNSET_KEY:-}\"]\n",
        );
        assert_eq!(get(&gw, "/v1/models", &[]).status, 200);
    }

    #[test]
    fn admin_key_is_separate_from_proxy_keys() {
        let gw = TestGateway::start_with_env(YAML, &[("ADMIN_API_KEY", "adm-9")]);
        assert_eq!(get(&gw, "/admin/config", &[]).status, 401);
        assert_eq!(
            get(&gw, "/admin/config", &[("Authorization", "Bearer k-123")]).status,
            401,
            "a proxy key is not an admin key"
        );
        assert_eq!(
            get(&gw, "/admin/config", &[("Authorization", "adm-9")]).status,
            401,
            "Bearer scheme required"
        );
        let r = get(&gw, "/admin/config", &[("Authorization", "Bearer adm-9")]);
        assert_eq!(r.status, 200);
        assert!(!r.text().contains("k-123") && !r.text().contains("adm-9"));
        // The admin listener takes the key from any peer, and nothing else.
        let r = gw.admin(
            "GET",
            "/admin/config",
            &[("Authorization", "Bearer adm-9")],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(gw.admin("GET", "/admin/config", &[], b"").status, 401);
        // Without ADMIN_API_KEY: never on the main listener, loopback or not; local clients of
        // the admin listener are served.
        let open = TestGateway::start(YAML);
        let r = get(&open, "/admin/config", &[]);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(get(&open, "/metrics", &[]).status, 401);
        assert_eq!(open.admin("GET", "/admin/config", &[], b"").status, 200);
        assert_eq!(open.admin("GET", "/metrics", &[], b"").status, 200);
    }
}
