//! Key extraction and chain tests; request builders shared by the provider tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::{ApimanConfig, ApimanMode};
use crate::error::{ApiError, ErrorKind};
use crate::http::Version;
use crate::secret::Secret;

pub(crate) fn request_from(peer: SocketAddr, headers: &[(&str, &str)], query: &str) -> Request {
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

pub(crate) fn request(headers: &[(&str, &str)], query: &str) -> Request {
    request_from(([10, 0, 0, 7], 40000).into(), headers, query)
}

fn keys(headers: &[(&str, &str)], query: &str) -> Vec<Vec<u8>> {
    extract_keys(&request(headers, query))
        .into_iter()
        .map(|k| k.0)
        .collect()
}

fn strs(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn keys_in_order_bearer_header_query() {
    let got = keys(
        &[
            ("X-API-Key", "from-header"),
            ("Authorization", "Bearer from-bearer"),
        ],
        "a=1&apikey=from-query",
    );
    assert_eq!(got, strs(&["from-bearer", "from-header", "from-query"]));
}

#[test]
fn azure_api_key_header_is_read_like_x_api_key() {
    assert_eq!(keys(&[("api-key", " az-key ")], ""), strs(&["az-key"]));
    let got = keys(&[("Api-Key", "az"), ("X-API-Key", "x")], "apikey=q");
    assert_eq!(got, strs(&["x", "az", "q"]));
}

#[test]
fn duplicates_are_kept_once_at_first_position() {
    let got = keys(
        &[("Authorization", "Bearer k1"), ("X-API-Key", "k1")],
        "apikey=k2",
    );
    assert_eq!(got, strs(&["k1", "k2"]));
    let got = keys(&[("X-API-Key", "k2")], "apikey=k2");
    assert_eq!(got, strs(&["k2"]));
    // Percent-decoding happens before de-duplication.
    let got = keys(&[("X-API-Key", "a/b")], "apikey=a%2Fb");
    assert_eq!(got, strs(&["a/b"]));
}

#[test]
fn bearer_scheme_is_case_insensitive_and_other_schemes_are_not_keys() {
    assert_eq!(keys(&[("Authorization", "bearer k")], ""), strs(&["k"]));
    assert_eq!(keys(&[("Authorization", "BEARER   k ")], ""), strs(&["k"]));
    assert_eq!(keys(&[("Authorization", "Bearer\tk")], ""), strs(&["k"]));
    assert!(keys(&[("Authorization", "sk-raw")], "").is_empty());
    assert!(keys(&[("Authorization", "Basic dXNlcjpwYXNz")], "").is_empty());
    assert!(keys(&[("Authorization", "Bearer")], "").is_empty());
    assert!(keys(&[("Authorization", "Bearer   ")], "").is_empty());
    assert!(keys(&[("Authorization", "Bearerk")], "").is_empty());
}

#[test]
fn query_is_percent_decoded() {
    assert_eq!(keys(&[], "apikey=sk%2D1%3d%3D"), strs(&["sk-1=="]));
    // `+` stays a plus; a malformed escape stays literal.
    assert_eq!(keys(&[], "apikey=a+b%zz%4"), strs(&["a+b%zz%4"]));
    // The first non-empty value wins; other parameters and look-alikes are ignored.
    assert_eq!(
        keys(&[], "apikey=&xapikey=no&apikey=yes&apikey=later"),
        strs(&["yes"])
    );
    assert_eq!(keys(&[], "api%6Bey=enc"), strs(&["enc"]));
    assert!(keys(&[], "apikey").is_empty());
    assert!(keys(&[], "").is_empty());
    // Decoding may produce bytes that are not UTF-8; they are kept as bytes.
    assert_eq!(keys(&[], "apikey=%FF%00x"), vec![b"\xff\x00x".to_vec()]);
}

#[test]
fn empty_and_oversized_candidates_are_skipped() {
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let max = "m".repeat(MAX_KEY_BYTES);
    let got = keys(
        &[
            ("Authorization", &format!("Bearer {long}")),
            ("X-API-Key", ""),
        ],
        &format!("apikey={max}"),
    );
    assert_eq!(got, vec![max.into_bytes()]);
}

#[test]
fn debug_never_shows_a_key() {
    let k = extract_keys(&request(&[("X-API-Key", "sk-secret")], ""));
    assert_eq!(format!("{k:?}"), "[ApiKey(*** 9 bytes)]");
}

fn config(keys: &[&str], apiman: ApimanConfig) -> Config {
    let mut cfg = crate::config::parse("", "test", &NoEnv).unwrap();
    cfg.proxy_api_keys = keys
        .iter()
        .enumerate()
        .map(|(i, k)| crate::config::ProxyKey::plain(i, *k))
        .collect();
    cfg.apiman = apiman;
    cfg
}

struct NoEnv;
impl crate::config::EnvLookup for NoEnv {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

#[test]
fn no_provider_is_open() {
    let auth = Auth::from_config(&config(&[], ApimanConfig::default()));
    assert!(auth.is_open());
    assert_eq!(auth.check(&request(&[], "")), Ok(()));
    // Apiman present in the file but disabled does not switch auth on.
    let disabled = ApimanConfig {
        enabled: false,
        header: Some("X-T".into()),
        secret: Some(Secret::new("s")),
        ..ApimanConfig::default()
    };
    assert!(Auth::from_config(&config(&[], disabled)).is_open());
}

#[test]
fn static_chain_decisions() {
    let auth = Auth::from_config(&config(&["sk-a", "sk-b"], ApimanConfig::default()));
    assert!(!auth.is_open());
    assert_eq!(auth.provider_names(), vec!["static"]);
    let check = |h: &[(&str, &str)], q: &str| auth.check(&request(h, q));
    assert_eq!(check(&[], ""), Err(AuthError::Missing));
    assert_eq!(
        check(&[("Authorization", "Bearer nope")], ""),
        Err(AuthError::Invalid)
    );
    assert_eq!(
        check(&[("Authorization", "sk-a")], ""),
        Err(AuthError::Missing)
    );
    assert_eq!(check(&[("Authorization", "Bearer sk-a")], ""), Ok(()));
    assert_eq!(check(&[("X-API-Key", "sk-b")], ""), Ok(()));
    assert_eq!(check(&[], "apikey=sk%2Db"), Ok(()));
    // The caller is the key entry that matched, by name.
    let caller = auth
        .identify(&request(&[("X-API-Key", "sk-b")], ""))
        .unwrap();
    assert_eq!(caller.name(), Some("key-2"));
    // A wrong first candidate does not hide a right later one.
    assert_eq!(
        check(
            &[
                ("Authorization", "Bearer \u{e9}\u{fffd}"),
                ("X-API-Key", "x")
            ],
            "apikey=sk-a"
        ),
        Ok(())
    );
}

#[test]
fn trusted_header_and_static_keys_together() {
    let apiman = ApimanConfig {
        enabled: true,
        mode: ApimanMode::TrustedHeader,
        header: Some("X-Gw".into()),
        secret: Some(Secret::new("gw-secret")),
        ..ApimanConfig::default()
    };
    let auth = Auth::from_config(&config(&["sk-a"], apiman));
    assert_eq!(
        auth.provider_names(),
        vec!["static", "apiman_trusted_header"]
    );
    let check = |h: &[(&str, &str)]| auth.check(&request(h, ""));
    assert_eq!(check(&[("X-Gw", "gw-secret")]), Ok(()));
    // Apiman callers are unscoped.
    let caller = auth
        .identify(&request(&[("X-Gw", "gw-secret")], ""))
        .unwrap();
    assert_eq!(caller.name(), None);
    assert!(caller.may_use("anything"));
    assert_eq!(check(&[("X-API-Key", "sk-a")]), Ok(()));
    assert_eq!(check(&[("X-Gw", "wrong")]), Err(AuthError::Invalid));
    assert_eq!(check(&[("X-Gw", "wrong"), ("X-API-Key", "sk-a")]), Ok(()));
    assert_eq!(check(&[]), Err(AuthError::Missing));
}

/// A provider with a fixed verdict that counts its calls.
struct Fixed(Verdict, AtomicUsize);
impl Provider for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn check(&self, _: &Request, _: &[ApiKey]) -> Verdict {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0
    }
}

#[test]
fn any_accept_wins_and_stops_the_chain() {
    let v = |verdict| Arc::new(Fixed(verdict, AtomicUsize::new(0)));
    let (rej, acc, later) = (v(Verdict::Reject), v(Verdict::Accept), v(Verdict::Reject));
    let auth = Auth::with_providers(vec![rej.clone(), acc.clone(), later.clone()]);
    assert_eq!(auth.check(&request(&[], "")), Ok(()));
    assert_eq!(
        later.1.load(Ordering::SeqCst),
        0,
        "no provider runs after an accept"
    );
    // Unavailable outranks Invalid, which outranks Missing.
    let chain = |vs: &[Verdict]| {
        let ps = vs.iter().map(|x| v(*x) as Arc<dyn Provider>).collect();
        Auth::with_providers(ps).check(&request(&[], ""))
    };
    use Verdict::*;
    assert_eq!(chain(&[Unavailable, Reject]), Err(AuthError::Unavailable));
    assert_eq!(chain(&[Reject, Unavailable]), Err(AuthError::Unavailable));
    assert_eq!(chain(&[NoCredential, Reject]), Err(AuthError::Invalid));
    assert_eq!(
        chain(&[NoCredential, NoCredential]),
        Err(AuthError::Missing)
    );
    assert_eq!(chain(&[Unavailable, Accept]), Ok(()));
}

#[test]
fn errors_are_openai_shaped_and_never_echo_keys() {
    let e = ApiError::from(AuthError::Invalid);
    assert_eq!((e.status, e.kind), (401, ErrorKind::Authentication));
    assert_eq!(e.body()["error"]["code"], "invalid_api_key");
    assert_eq!(ApiError::from(AuthError::Missing).status, 401);
    let u = ApiError::from(AuthError::Unavailable);
    assert_eq!(u.status, 503);
    assert_eq!(u.retry_after.as_deref(), Some("1"));
}

#[test]
fn rebuild_keeps_the_probe_cache_for_the_same_probe() {
    let probe = ApimanConfig {
        enabled: true,
        mode: ApimanMode::GatewayProbe,
        gateway_url: Some("http://127.0.0.1:9/gw".into()),
        probe_api: Some("o/a/1".into()),
        ..ApimanConfig::default()
    };
    let first = Auth::from_config(&config(&[], probe.clone()));
    let again = first.rebuild(&config(&["sk-new"], probe.clone()));
    assert_eq!(
        again.provider_names(),
        vec!["static", "apiman_gateway_probe"]
    );
    let (a, b) = (first.probe.as_ref().unwrap(), again.probe.as_ref().unwrap());
    assert!(b.shares_cache_with(a));
    let moved = ApimanConfig {
        gateway_url: Some("http://127.0.0.1:9/other".into()),
        ..probe
    };
    let changed = again.rebuild(&config(&[], moved));
    assert!(!changed.probe.as_ref().unwrap().shares_cache_with(b));
    assert!(
        again
            .rebuild(&config(&[], ApimanConfig::default()))
            .is_open()
    );
}
