//! The fixed label sets of the metrics: [`Route`], [`Status`], [`UpstreamError`] and
//! [`ToolOutcome`]. Each enum lists its values in exposition order (`ALL`), names them with a
//! `match` (`label`), and gives each its slot in the registry's counter tables (`index`, the
//! position in `ALL`). Label values that come from the config or from clients (assistants,
//! backends, tools, keys) are not here: they are interned at run time ([`super::table`]).

use super::OTHER;

/// Routes of `aiproxy_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Models,
    Chat,
    Admin,
    Metrics,
    Other,
    Responses,
    Completions,
}

impl Route {
    /// Every route, in exposition order (`index` is the position here).
    pub const ALL: [Route; 8] = [
        Route::Health,
        Route::Models,
        Route::Chat,
        Route::Admin,
        Route::Metrics,
        Route::Other,
        Route::Responses,
        Route::Completions,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Models => "models",
            Route::Chat => "chat",
            Route::Admin => "admin",
            Route::Metrics => "metrics",
            Route::Other => "other",
            Route::Responses => "responses",
            Route::Completions => "completions",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Route::Health => 0,
            Route::Models => 1,
            Route::Chat => 2,
            Route::Admin => 3,
            Route::Metrics => 4,
            Route::Other => 5,
            Route::Responses => 6,
            Route::Completions => 7,
        }
    }
}

/// How a request ended, for the `status` labels and the access line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered with this HTTP status.
    Http(u16),
    /// The client went away before the answer was complete; counted as `status="499"`
    /// (nginx's "client closed request"), a label kept stable for dashboards. No 499 is ever
    /// sent.
    ClientGone,
}

impl Status {
    /// Statuses with series of their own, in exposition order; any other is counted as
    /// `other` ([`Status::index`] is the position here, `ALL.len()` for `other`).
    pub(super) const ALL: [Status; 19] = [
        Status::Http(200),
        Status::Http(201),
        Status::Http(204),
        Status::Http(400),
        Status::Http(401),
        Status::Http(403),
        Status::Http(404),
        Status::Http(405),
        Status::Http(408),
        Status::Http(409),
        Status::Http(413),
        Status::Http(422),
        Status::Http(429),
        Status::ClientGone,
        Status::Http(500),
        Status::Http(502),
        Status::Http(503),
        Status::Http(504),
        Status::Http(505),
    ];
    pub(super) const N: usize = Status::ALL.len() + 1;

    /// The `status` label value.
    pub fn label(self) -> String {
        match self {
            Status::Http(code) => code.to_string(),
            Status::ClientGone => "499".to_string(),
        }
    }

    pub(super) fn index(self) -> usize {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(Status::ALL.len())
    }

    /// The label of index `i` (`other` past the named statuses).
    pub(super) fn label_at(i: usize) -> String {
        Status::ALL
            .get(i)
            .map_or_else(|| OTHER.to_string(), |s| s.label())
    }
}

impl Default for Status {
    /// Nothing answered yet (counted as `other` if it stays so).
    fn default() -> Self {
        Status::Http(0)
    }
}

impl std::fmt::Display for Status {
    /// For the access line: the status, or `client_gone`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Http(code) => write!(f, "{code}"),
            Status::ClientGone => f.write_str("client_gone"),
        }
    }
}

/// How an upstream call failed (`aiproxy_upstream_errors_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    RateLimited,
    Status,
    Protocol,
    TooLarge,
}

impl UpstreamError {
    /// Every kind, in exposition order (`index` is the position here).
    pub const ALL: [UpstreamError; 6] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::RateLimited,
        UpstreamError::Status,
        UpstreamError::Protocol,
        UpstreamError::TooLarge,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::RateLimited => "rate_limited",
            UpstreamError::Status => "status",
            UpstreamError::Protocol => "protocol",
            UpstreamError::TooLarge => "too_large",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            UpstreamError::Connect => 0,
            UpstreamError::Timeout => 1,
            UpstreamError::RateLimited => 2,
            UpstreamError::Status => 3,
            UpstreamError::Protocol => 4,
            UpstreamError::TooLarge => 5,
        }
    }
}

/// How one MCP tool call ended (`aiproxy_tool_calls_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// The tool answered normally.
    Ok,
    /// The tool answered with `isError`, or the call failed (server down, protocol error).
    Error,
    Timeout,
    Cancelled,
    /// The model called a tool that is not offered, or sent unparsable arguments.
    Invalid,
}

impl ToolOutcome {
    /// Every outcome, in exposition order (`index` is the position here).
    pub const ALL: [ToolOutcome; 5] = [
        ToolOutcome::Ok,
        ToolOutcome::Error,
        ToolOutcome::Timeout,
        ToolOutcome::Cancelled,
        ToolOutcome::Invalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::Error => "error",
            ToolOutcome::Timeout => "timeout",
            ToolOutcome::Cancelled => "cancelled",
            ToolOutcome::Invalid => "invalid",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            ToolOutcome::Ok => 0,
            ToolOutcome::Error => 1,
            ToolOutcome::Timeout => 2,
            ToolOutcome::Cancelled => 3,
            ToolOutcome::Invalid => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_renders_as_before_and_indexes_its_position() {
        let routes: Vec<&str> = Route::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(
            routes,
            [
                "health",
                "models",
                "chat",
                "admin",
                "metrics",
                "other",
                "responses",
                "completions"
            ]
        );
        let kinds: Vec<&str> = UpstreamError::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(
            kinds,
            [
                "connect",
                "timeout",
                "rate_limited",
                "status",
                "protocol",
                "too_large"
            ]
        );
        let outcomes: Vec<&str> = ToolOutcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(outcomes, ["ok", "error", "timeout", "cancelled", "invalid"]);
        let statuses: Vec<String> = (0..Status::N).map(Status::label_at).collect();
        assert_eq!(
            statuses,
            [
                "200", "201", "204", "400", "401", "403", "404", "405", "408", "409", "413", "422",
                "429", "499", "500", "502", "503", "504", "505", "other"
            ]
        );
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, k) in UpstreamError::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, o) in ToolOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }
}
