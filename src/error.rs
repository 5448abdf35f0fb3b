//! The HTTP-edge error: a status plus an OpenAI-shaped body
//! `{"error":{"message","type","param","code"}}`, and every mapping into it. Domain modules
//! keep their own error enums (`backend::Error`, `agent::LoopError`, `auth::AuthError`,
//! `auth::AdminError`, …); the one place that turns each into a status and an [`ErrorKind`] is
//! this file, with exhaustive matches, so a new variant does not compile until it has an
//! answer. Elsewhere an `ApiError` is made through a named constructor
//! ([`ApiError::bad_request`], [`ApiError::not_found`], …): a status and its `type` are chosen
//! here only. The edge logs an error once, where it is sent.
//!
//! A departed client is not an error status: the gateway reports it as
//! `metrics::Status::ClientGone`. What is still written to its socket (in case it only
//! half-closed) is [`ApiError::client_gone`], a 500.

use serde_json::{Value, json};

use crate::agent::LoopError;
use crate::auth::{AdminError, AuthError};
use crate::backend;

/// The OpenAI error `type` of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RateLimit,
    /// The upstream LLM or MCP server failed (not an OpenAI type: OpenAI has no upstream).
    Upstream,
    Server,
    Timeout,
    Overloaded,
    /// Written to a client that went away (it reads it only if it merely half-closed).
    ClientClosedRequest,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::Permission,
        ErrorKind::NotFound,
        ErrorKind::RateLimit,
        ErrorKind::Upstream,
        ErrorKind::Server,
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
        ErrorKind::ClientClosedRequest,
    ];

    /// The `type` field of the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Server => "server_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::ClientClosedRequest => "client_closed_request",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// OpenAI `type`.
    pub kind: ErrorKind,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Sent as `Retry-After` (seconds) with 429 and 503.
    pub retry_after: Option<String>,
}

impl ApiError {
    /// Private: a status and its kind are paired by the constructors and mappings below.
    fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn with_retry_after(mut self, seconds: &str) -> Self {
        self.retry_after = Some(seconds.into());
        self
    }

    /// 400: the request is malformed or asks for something unsupported.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, ErrorKind::InvalidRequest, message)
    }

    /// 401 for `/v1/*` (the route adds `WWW-Authenticate: Bearer`).
    pub fn unauthorized() -> Self {
        ApiError::new(401, ErrorKind::Authentication, "invalid or missing API key")
            .with_code("invalid_api_key")
    }

    /// 403: refused whoever asks this way.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, ErrorKind::Permission, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, ErrorKind::NotFound, message)
    }

    /// 404 with OpenAI's `model_not_found` shape (an `invalid_request_error`).
    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            404,
            ErrorKind::InvalidRequest,
            format!("model '{model}' not found; GET /v1/models lists the available assistants"),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, ErrorKind::InvalidRequest, message)
    }

    /// 409: the change conflicts with the current state (e.g. an entry still in use).
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(409, ErrorKind::InvalidRequest, message)
    }

    /// 413: the body is within the byte limit but too much to work on.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, ErrorKind::InvalidRequest, message)
    }

    /// 422: well-formed, but not acceptable (e.g. an invalid config change).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::new(422, ErrorKind::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, ErrorKind::Server, message)
    }

    /// 503 with `Retry-After: 1`: a limit of ours is reached.
    pub fn overloaded() -> Self {
        ApiError::new(
            503,
            ErrorKind::Overloaded,
            "server overloaded, retry shortly",
        )
        .with_retry_after("1")
    }

    /// 429 for a limit of the caller's API key (`rate_limit_exceeded`), with `Retry-After` in
    /// whole seconds, rounded up.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        ApiError::new(429, ErrorKind::RateLimit, message)
            .with_code("rate_limit_exceeded")
            .with_retry_after(&secs.max(1).to_string())
    }

    /// What is written to a client that went away (see the module doc).
    pub fn client_gone() -> Self {
        ApiError::new(500, ErrorKind::ClientClosedRequest, "client disconnected")
    }

    /// 502: an MCP server failed to answer an admin request about it.
    /// An MCP server failed an admin call; `detail` is the error already redacted of the
    /// server's secrets.
    pub fn mcp_server(name: &str, detail: &str) -> Self {
        ApiError::new(
            502,
            ErrorKind::Upstream,
            format!("MCP server '{name}': {detail}"),
        )
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind.as_str(),
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

/// The one mapping from upstream failures to what the client sees (docs/api.md#errors).
impl From<&backend::Error> for ApiError {
    fn from(e: &backend::Error) -> Self {
        use backend::Error as E;
        let msg = e.to_string();
        match e {
            E::Connect(_) | E::Protocol(_) | E::TooLarge => {
                ApiError::new(502, ErrorKind::Upstream, msg)
            }
            E::Timeout => ApiError::new(504, ErrorKind::Timeout, msg),
            E::Cancelled => ApiError::client_gone(),
            E::Status {
                status,
                retry_after,
                ..
            } => {
                let mut out = match *status {
                    429 => ApiError::new(429, ErrorKind::RateLimit, msg)
                        .with_code("rate_limit_exceeded"),
                    // Our upstream credentials were refused: a gateway problem, not the client's.
                    401 | 403 => ApiError::new(502, ErrorKind::Upstream, msg)
                        .with_code("upstream_auth_failed"),
                    // The upstream rejected what the client asked for (e.g. a parameter).
                    400 | 413 | 422 => ApiError::new(400, ErrorKind::InvalidRequest, msg),
                    503 | 529 => ApiError::new(503, ErrorKind::Overloaded, msg),
                    504 => ApiError::new(504, ErrorKind::Timeout, msg),
                    _ => ApiError::new(502, ErrorKind::Upstream, msg),
                };
                out.retry_after = retry_after.clone();
                out
            }
        }
    }
}

/// A failed tool loop. A departed client is also reported as an outcome by the gateway
/// (`LoopError::Cancelled` → `metrics::Status::ClientGone`); the deadline is a 504, never a
/// departed client.
impl From<&LoopError> for ApiError {
    fn from(e: &LoopError) -> Self {
        match e {
            LoopError::Backend(b) => ApiError::from(b),
            LoopError::Deadline => ApiError::new(504, ErrorKind::Timeout, "request timed out"),
            LoopError::Cancelled => ApiError::client_gone(),
        }
    }
}

/// A refused `/v1/*` request (never echoes the key). Missing and invalid keys are 401 (the
/// route adds `WWW-Authenticate: Bearer`); an unavailable Apiman gateway is a retryable 503,
/// so a valid key holder is not told the key is wrong and SDKs retry on their own.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid => ApiError::unauthorized(),
            AuthError::Unavailable => ApiError::new(
                503,
                ErrorKind::Server,
                "the API key could not be verified right now (auth gateway unavailable); retry shortly",
            )
            .with_code("auth_unavailable")
            .with_retry_after("1"),
        }
    }
}

/// A refused `/admin/*` or `/metrics` request; the route adds `WWW-Authenticate: Bearer` to a
/// 401.
impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let forbidden = |code: &'static str, msg: &str| ApiError::forbidden(msg).with_code(code);
        match e {
            AdminError::Unauthorized => ApiError::new(
                401,
                ErrorKind::Authentication,
                "invalid or missing admin key (send Authorization: Bearer <ADMIN_API_KEY>)",
            )
            .with_code("invalid_api_key"),
            AdminError::NoKeyOnMain => ApiError::new(
                401,
                ErrorKind::Authentication,
                "the admin API and /metrics answer here only with ADMIN_API_KEY as Authorization: Bearer <key>; without a key use the admin listener (admin.listen, 127.0.0.1:8001 by default) from the same host",
            )
            .with_code("invalid_api_key"),
            AdminError::Forbidden => forbidden(
                "admin_loopback_only",
                "the admin listener answers loopback clients only; set ADMIN_API_KEY and send it as Authorization: Bearer <key> to use it remotely",
            ),
            AdminError::ForeignHost => forbidden(
                "admin_foreign_host",
                "the admin listener answers keyless requests only for Host localhost, 127.0.0.1 or [::1]",
            ),
            AdminError::CrossOrigin => forbidden(
                "admin_cross_origin",
                "the admin listener does not answer keyless requests from web pages (Origin header present)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client sees of an error: status, `type`, `code`, `Retry-After`.
    fn shape(e: &ApiError) -> (u16, String, Option<&'static str>, Option<String>) {
        let body = e.body();
        let kind = body["error"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (e.status, kind, e.code, e.retry_after.clone())
    }

    #[test]
    fn body_is_openai_shaped() {
        let e = ApiError::model_not_found("x");
        let b = e.body();
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["param"], "model");
        assert_eq!(b["error"]["code"], "model_not_found");
        assert!(b["error"]["message"].as_str().unwrap().contains("'x'"));
    }

    #[test]
    fn every_kind_renders_its_openai_type() {
        let rendered: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            rendered,
            [
                "invalid_request_error",
                "authentication_error",
                "permission_error",
                "not_found_error",
                "rate_limit_error",
                "upstream_error",
                "server_error",
                "timeout_error",
                "overloaded_error",
                "client_closed_request",
            ]
        );
        assert_eq!(ErrorKind::Timeout.to_string(), "timeout_error");
    }

    #[test]
    fn constructors_keep_their_status_and_type() {
        let cases = [
            (
                ApiError::bad_request("m"),
                (400, "invalid_request_error", None, None),
            ),
            (
                ApiError::unauthorized(),
                (401, "authentication_error", Some("invalid_api_key"), None),
            ),
            (
                ApiError::forbidden("m"),
                (403, "permission_error", None, None),
            ),
            (
                ApiError::not_found("m"),
                (404, "not_found_error", None, None),
            ),
            (
                ApiError::model_not_found("m"),
                (404, "invalid_request_error", Some("model_not_found"), None),
            ),
            (
                ApiError::method_not_allowed("m"),
                (405, "invalid_request_error", None, None),
            ),
            (
                ApiError::conflict("m"),
                (409, "invalid_request_error", None, None),
            ),
            (
                ApiError::payload_too_large("m"),
                (413, "invalid_request_error", None, None),
            ),
            (
                ApiError::unprocessable("m"),
                (422, "invalid_request_error", None, None),
            ),
            (ApiError::internal("m"), (500, "server_error", None, None)),
            (
                ApiError::overloaded(),
                (503, "overloaded_error", None, Some("1")),
            ),
            (
                ApiError::client_gone(),
                (500, "client_closed_request", None, None),
            ),
            (
                ApiError::mcp_server("s", &crate::mcp::Error::Closed("eof".into()).to_string()),
                (502, "upstream_error", None, None),
            ),
        ];
        for (e, (status, kind, code, retry)) in cases {
            assert_eq!(
                shape(&e),
                (status, kind.to_string(), code, retry.map(String::from)),
                "{e}"
            );
        }
    }

    #[test]
    fn upstream_statuses_map_per_spec() {
        let st = |s| {
            ApiError::from(&backend::Error::Status {
                status: s,
                message: "m".into(),
                retry_after: Some("7".into()),
            })
        };
        let t = |s: &str| s.to_string();
        assert_eq!(
            shape(&st(429)),
            (
                429,
                t("rate_limit_error"),
                Some("rate_limit_exceeded"),
                Some(t("7"))
            )
        );
        assert_eq!(
            shape(&st(401)),
            (
                502,
                t("upstream_error"),
                Some("upstream_auth_failed"),
                Some(t("7"))
            )
        );
        assert_eq!(shape(&st(403)).0, 502);
        assert_eq!(
            shape(&st(422)),
            (400, t("invalid_request_error"), None, Some(t("7")))
        );
        assert_eq!(
            shape(&st(500)),
            (502, t("upstream_error"), None, Some(t("7")))
        );
        assert_eq!(
            shape(&st(529)),
            (503, t("overloaded_error"), None, Some(t("7")))
        );
        assert_eq!(
            shape(&st(504)),
            (504, t("timeout_error"), None, Some(t("7")))
        );
        let from = |e: backend::Error| shape(&ApiError::from(&e));
        assert_eq!(
            from(backend::Error::Timeout),
            (504, t("timeout_error"), None, None)
        );
        assert_eq!(
            from(backend::Error::Connect("refused".into())),
            (502, t("upstream_error"), None, None)
        );
        assert_eq!(from(backend::Error::TooLarge).0, 502);
        assert_eq!(
            from(backend::Error::Cancelled),
            (500, t("client_closed_request"), None, None)
        );
    }

    #[test]
    fn loop_errors_map_and_a_departed_client_is_no_499() {
        let from = |e: LoopError| ApiError::from(&e);
        assert_eq!(
            (
                from(LoopError::Deadline).status,
                from(LoopError::Deadline).kind
            ),
            (504, ErrorKind::Timeout)
        );
        assert_eq!(
            from(LoopError::Backend(backend::Error::Timeout)).status,
            504
        );
        let gone = from(LoopError::Cancelled);
        assert_eq!(
            (gone.status, gone.kind),
            (500, ErrorKind::ClientClosedRequest)
        );
        assert_eq!(gone.message, "client disconnected");
    }

    #[test]
    fn auth_and_admin_refusals_map_as_before() {
        let t = |s: &str| s.to_string();
        let auth = |e| shape(&ApiError::from(e));
        assert_eq!(
            auth(AuthError::Missing),
            (
                401,
                t("authentication_error"),
                Some("invalid_api_key"),
                None
            )
        );
        assert_eq!(auth(AuthError::Invalid), auth(AuthError::Missing));
        assert_eq!(
            auth(AuthError::Unavailable),
            (
                503,
                t("server_error"),
                Some("auth_unavailable"),
                Some(t("1"))
            )
        );
        let admin = |e| shape(&ApiError::from(e));
        assert_eq!(
            admin(AdminError::Unauthorized),
            (
                401,
                t("authentication_error"),
                Some("invalid_api_key"),
                None
            )
        );
        assert_eq!(
            admin(AdminError::NoKeyOnMain),
            (
                401,
                t("authentication_error"),
                Some("invalid_api_key"),
                None
            )
        );
        assert_eq!(
            admin(AdminError::Forbidden),
            (
                403,
                t("permission_error"),
                Some("admin_loopback_only"),
                None
            )
        );
        assert_eq!(
            admin(AdminError::ForeignHost),
            (403, t("permission_error"), Some("admin_foreign_host"), None)
        );
        assert_eq!(
            admin(AdminError::CrossOrigin),
            (403, t("permission_error"), Some("admin_cross_origin"), None)
        );
    }
}
