//! The stateless 2026-07-28 revision ("modern" era) and how we tell it from the legacy ones.
//!
//! Owns: the per-request `_meta` envelope (`protocolVersion`, `clientCapabilities`,
//! `clientInfo`; 2026-07-28 basic/index.mdx), the `server/discover` probe request and the
//! classification of its answer (versioning.mdx "Backwards compatibility": a `DiscoverResult`
//! or a recognised modern error means modern, anything else legacy), the `-32022
//! UnsupportedProtocolVersion` negotiation, and multi-round-trip (`input_required`) results as a
//! client without capabilities can honour them. Pure functions; no threads, no I/O.

use serde_json::{Map, Value, json};

use super::jsonrpc::RpcError;
use super::protocol::{CLIENT_NAME, cut};

/// The modern revision we speak.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Modern revisions we speak, newest first.
pub const MODERN_VERSIONS: [&str; 1] = [MODERN_VERSION];

/// 2026-07-28 error codes (basic/index.mdx "Error codes").
pub const HEADER_MISMATCH: i64 = -32020;
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// `_meta` keys of the request envelope.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// How many `input_required` rounds one tool call may take before we give up.
pub const MAX_INPUT_ROUNDS: usize = 8;

/// Which protocol era a session should speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Era {
    /// Probe for 2026-07-28 where the transport allows it, fall back to `initialize`.
    #[default]
    Auto,
    /// Always `initialize` (2024-11-05 … 2025-11-25).
    Legacy,
    /// Always stateless 2026-07-28, without a probe.
    Modern,
}

pub fn is_modern(version: &str) -> bool {
    MODERN_VERSIONS.contains(&version)
}

/// `params` with the modern envelope merged into its `_meta` (keys already there, such as a
/// `progressToken`, are kept). Capabilities are empty: we answer no server questions.
pub fn with_meta(params: Option<Value>, version: &str) -> Value {
    let mut obj = match params {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut meta = match obj.remove("_meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.insert(META_VERSION.into(), json!(version));
    meta.insert(META_CAPABILITIES.into(), json!({}));
    meta.insert(
        META_CLIENT_INFO.into(),
        json!({"name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION")}),
    );
    obj.insert("_meta".into(), Value::Object(meta));
    Value::Object(obj)
}

/// The protocol version a message's `_meta` names, if any (the HTTP transport mirrors it in
/// the `MCP-Protocol-Version` header, which must equal it).
pub fn meta_version(params: Option<&Value>) -> Option<&str> {
    params?.get("_meta")?.get(META_VERSION)?.as_str()
}

/// The modern version to retry with after `-32022`, from `error.data.supported`.
pub fn pick_supported(error: &RpcError) -> Option<&'static str> {
    let supported = error.data.as_ref()?.get("supported")?.as_array()?;
    MODERN_VERSIONS
        .into_iter()
        .find(|v| supported.iter().any(|s| s.as_str() == Some(v)))
}

/// What the server's answer to `server/discover` says about its era.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Modern: it speaks `version`.
    Modern {
        version: &'static str,
        server_name: Option<String>,
        server_version: Option<String>,
    },
    /// It asked for another version it lists (`-32022`): ask again with that one.
    Retry(&'static str),
    /// Legacy (or nothing we can speak in the modern era): run `initialize`.
    Legacy(String),
}

/// Classify a `server/discover` result.
pub fn probe_result(result: &Value) -> Probe {
    let listed = result.get("supportedVersions").and_then(Value::as_array);
    let version = listed.and_then(|l| {
        MODERN_VERSIONS
            .into_iter()
            .find(|v| l.iter().any(|s| s.as_str() == Some(v)))
    });
    let Some(version) = version else {
        return Probe::Legacy("the discover result lists no version we speak".into());
    };
    let info = result
        .get("serverInfo")
        .or_else(|| result.get("_meta").and_then(|m| m.get(META_SERVER_INFO)));
    let field = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .map(|s| cut(s, 100))
    };
    Probe::Modern {
        version,
        server_name: field("name"),
        server_version: field("version"),
    }
}

/// Classify a JSON-RPC error answer to `server/discover`. Only the modern error codes mean
/// modern; every other error is what a legacy server says to a method it does not know
/// (versioning.mdx: never key the fallback to one specific code).
pub fn probe_error(error: &RpcError, retried: bool) -> Probe {
    match error.code {
        UNSUPPORTED_PROTOCOL_VERSION => match pick_supported(error) {
            Some(v) if !retried => Probe::Retry(v),
            _ => Probe::Legacy(format!(
                "no common 2026-07-28-era version ({})",
                cut(&error.message, 100)
            )),
        },
        HEADER_MISMATCH | MISSING_CLIENT_CAPABILITY => Probe::Modern {
            version: MODERN_VERSION,
            server_name: None,
            server_version: None,
        },
        code => Probe::Legacy(format!("discover answered {code}")),
    }
}

/// `initialize` refused with a modern error: the server speaks 2026-07-28 after all (a stdio
/// server that got our `server/discover` probe too late for its timeout may have switched to
/// the modern era). Returns the version to use.
pub fn modern_refusal(error: &RpcError) -> Option<&'static str> {
    match error.code {
        UNSUPPORTED_PROTOCOL_VERSION => pick_supported(error),
        HEADER_MISMATCH | MISSING_CLIENT_CAPABILITY => Some(MODERN_VERSION),
        _ => None,
    }
}

/// What to do with a `tools/call` result in the multi-round-trip pattern (mrtr.mdx).
#[derive(Debug, Clone, PartialEq)]
pub enum Round {
    /// A final result.
    Complete,
    /// `input_required` with only a `requestState`: call again echoing it byte for byte.
    Again(Value),
    /// The server wants input we cannot give (we declare no capabilities).
    Unanswerable(String),
}

pub fn round(result: &Value) -> Round {
    if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
        return Round::Complete;
    }
    let asks = result
        .get("inputRequests")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    match result.get("requestState") {
        _ if asks => Round::Unanswerable(
            "the server asked for input (elicitation, sampling or roots) that the proxy cannot give"
                .into(),
        ),
        Some(state) if !state.is_null() => Round::Again(state.clone()),
        _ => Round::Unanswerable("input_required without requestState or inputRequests".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: i64, data: Option<Value>) -> RpcError {
        RpcError {
            code,
            message: "m".into(),
            data,
        }
    }

    #[test]
    fn modern_refusals_of_initialize() {
        let supported = Some(json!({"supported": ["2026-07-28"]}));
        assert_eq!(
            modern_refusal(&err(UNSUPPORTED_PROTOCOL_VERSION, supported)),
            Some(MODERN_VERSION)
        );
        assert_eq!(
            modern_refusal(&err(UNSUPPORTED_PROTOCOL_VERSION, None)),
            None
        );
        assert_eq!(
            modern_refusal(&err(HEADER_MISMATCH, None)),
            Some(MODERN_VERSION)
        );
        assert_eq!(modern_refusal(&err(-32601, None)), None);
    }

    #[test]
    fn meta_is_merged_into_params() {
        let p = with_meta(
            Some(json!({"name": "t", "_meta": {"progressToken": 3}})),
            MODERN_VERSION,
        );
        assert_eq!(p["name"], "t");
        assert_eq!(p["_meta"]["progressToken"], 3);
        assert_eq!(p["_meta"][META_VERSION], MODERN_VERSION);
        assert_eq!(p["_meta"][META_CAPABILITIES], json!({}));
        assert_eq!(p["_meta"][META_CLIENT_INFO]["name"], "aiproxy");
        assert_eq!(meta_version(Some(&p)), Some(MODERN_VERSION));
        let p = with_meta(None, MODERN_VERSION);
        assert_eq!(p.as_object().map(|o| o.len()), Some(1));
        assert_eq!(meta_version(None), None);
    }

    #[test]
    fn discover_results_classify() {
        let r = json!({"supportedVersions": ["2026-07-28"], "capabilities": {},
                       "serverInfo": {"name": "py", "version": "2"}});
        assert_eq!(
            probe_result(&r),
            Probe::Modern {
                version: MODERN_VERSION,
                server_name: Some("py".into()),
                server_version: Some("2".into())
            }
        );
        let r = json!({"supportedVersions": ["2026-07-28"],
                       "_meta": {META_SERVER_INFO: {"name": "m"}}});
        assert!(matches!(probe_result(&r), Probe::Modern { server_name: Some(n), .. } if n == "m"));
        // The conformance `initialize` mock answers every unknown method with `{}`.
        assert!(matches!(probe_result(&json!({})), Probe::Legacy(_)));
        assert!(matches!(
            probe_result(&json!({"supportedVersions": ["2099-01-01"]})),
            Probe::Legacy(_)
        ));
    }

    #[test]
    fn discover_errors_classify() {
        let supported = Some(json!({"supported": ["2026-07-28"], "requested": "x"}));
        assert_eq!(
            probe_error(&err(-32022, supported.clone()), false),
            Probe::Retry(MODERN_VERSION)
        );
        assert!(matches!(
            probe_error(&err(-32022, supported), true),
            Probe::Legacy(_)
        ));
        assert!(matches!(
            probe_error(
                &err(-32022, Some(json!({"supported": ["2025-11-25"]}))),
                false
            ),
            Probe::Legacy(_)
        ));
        assert!(matches!(
            probe_error(&err(-32020, None), false),
            Probe::Modern { .. }
        ));
        for code in [-32601, -32602, -32600, -32000] {
            assert!(matches!(
                probe_error(&err(code, None), false),
                Probe::Legacy(_)
            ));
        }
    }

    #[test]
    fn input_required_rounds() {
        assert_eq!(round(&json!({"content": []})), Round::Complete);
        assert_eq!(
            round(&json!({"resultType": "complete", "content": []})),
            Round::Complete
        );
        assert_eq!(
            round(&json!({"resultType": "input_required", "requestState": "s1"})),
            Round::Again(json!("s1"))
        );
        assert!(matches!(
            round(&json!({"resultType": "input_required",
                          "inputRequests": {"a": {"method": "elicitation/create"}},
                          "requestState": "s"})),
            Round::Unanswerable(_)
        ));
        assert!(matches!(
            round(&json!({"resultType": "input_required"})),
            Round::Unanswerable(_)
        ));
    }
}
