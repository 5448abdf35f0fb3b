//! The HTTP-edge error: a status plus an OpenAI-shaped body
//! `{"error":{"message","type","param","code"}}`. Domain errors (`backend::Error`,
//! `mcp::Error`, …) are mapped to it in one place each, at the edge, where it is also logged once.

use serde_json::{Value, json};

use crate::backend;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// OpenAI `type`: `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `rate_limit_error`, `upstream_error`, `server_error`, `timeout_error`, `overloaded_error`.
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Sent as `Retry-After` (seconds) with 429 and 503.
    pub retry_after: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "invalid_request_error", message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "authentication_error", "invalid or missing API key")
            .with_code("invalid_api_key")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(404, "not_found_error", message)
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            404,
            "invalid_request_error",
            format!("model '{model}' not found; GET /v1/models lists the available assistants"),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn overloaded() -> Self {
        let mut e = ApiError::new(503, "overloaded_error", "server overloaded, retry shortly");
        e.retry_after = Some("1".into());
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "server_error", message)
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
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
                ApiError::new(502, "upstream_error", msg)
            }
            E::Timeout => ApiError::new(504, "timeout_error", msg),
            E::Cancelled => ApiError::new(499, "client_closed_request", msg),
            E::Status {
                status,
                retry_after,
                ..
            } => {
                let mut out =
                    match *status {
                        429 => ApiError::new(429, "rate_limit_error", msg)
                            .with_code("rate_limit_exceeded"),
                        // Our upstream credentials were refused: a gateway problem, not the client's.
                        401 | 403 => ApiError::new(502, "upstream_error", msg)
                            .with_code("upstream_auth_failed"),
                        // The upstream rejected what the client asked for (e.g. a parameter).
                        400 | 413 | 422 => ApiError::new(400, "invalid_request_error", msg),
                        503 | 529 => ApiError::new(503, "overloaded_error", msg),
                        504 => ApiError::new(504, "timeout_error", msg),
                        _ => ApiError::new(502, "upstream_error", msg),
                    };
                out.retry_after = retry_after.clone();
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn upstream_statuses_map_per_spec() {
        let st = |s| {
            ApiError::from(&backend::Error::Status {
                status: s,
                message: "m".into(),
                retry_after: Some("7".into()),
            })
        };
        assert_eq!(st(429).status, 429);
        assert_eq!(st(429).retry_after.as_deref(), Some("7"));
        assert_eq!(st(401).status, 502);
        assert_eq!(st(500).status, 502);
        assert_eq!(st(529).status, 503);
        assert_eq!(ApiError::from(&backend::Error::Timeout).status, 504);
        assert_eq!(
            ApiError::from(&backend::Error::Connect("refused".into())).status,
            502
        );
    }
}
