//! The admin API (docs/auth-and-admin.md#admin-api): read and change assistants, backends and MCP servers while the
//! gateway serves traffic, and reload the config file.
//!
//! Routing is on the decoded path ([`parse_path`]): encoded slashes and backslashes, dot
//! segments (raw or encoded), empty segments and `%00` are refused with 400 before anything
//! else, and names must match `[A-Za-z0-9_.-]{1,64}` ([`config::valid_name`]).
//!
//! Every change is validated like the config file (`${VAR}` expanded in bodies, unknown fields
//! and unknown references → 422; deleting a backend or MCP server still in use → 409 naming the
//! assistants) and applied by swapping the registry snapshot under the app's change lock, so
//! requests already running finish on what they started with. Responses show values as
//! written (`${VAR}` references stay references, never their expanded values) and never
//! contain a secret (`dump`).
//!
//! With `admin.persist: true` the change is also written back to the config file, keeping the
//! body as sent, or refused as a whole (422, nothing applied) when it cannot be written back
//! faithfully (`persist`).
//!
//! With `admin.read_only: true` every change (`PUT`, `DELETE`) is refused with 405
//! (`admin_read_only`) — the config is managed from its file, e.g. a ConfigMap — while reads,
//! `/admin/mcp/{name}/tools` and `POST /admin/reload` keep working.
//!
//! Layout: this file routes (path parsing, names, read-only mode); `read` answers the reads,
//! `change` the writes and reloads, `persist` writes a change back to the file, [`dump`]
//! renders the config as JSON without secrets.
//!
//! Runs on the HTTP worker that owns the admin request.

mod change;
pub mod dump;
mod persist;
mod read;

use serde_json::Value;

use crate::app::App;
use crate::config;
use crate::error::ApiError;
use crate::http::Request;

/// An admin answer: a status and a JSON body (errors are OpenAI-shaped).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply {
            status: e.status,
            body: e.body(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Assistant,
    Backend,
    Mcp,
}

impl Kind {
    /// The config section that holds this kind.
    fn section(self) -> &'static str {
        match self {
            Kind::Assistant => "assistants",
            Kind::Backend => "backends",
            Kind::Mcp => "mcp_servers",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Assistant => "assistant",
            Kind::Backend => "backend",
            Kind::Mcp => "MCP server",
        }
    }
}

/// The segments after `/admin` of a raw request path, percent-decoded, or a 400 when the path
/// is ambiguous: an encoded `/` or `\\`, a dot segment (`.`, `..`, raw or encoded), an empty
/// segment, `%00` or another control character, a bad `%` escape or non-UTF-8. A proxy in front
/// may normalise such a path differently from us; refusing it leaves nothing to disagree on.
pub fn parse_path(raw: &str) -> Result<Vec<String>, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!("invalid admin path: {why}")).with_code("invalid_path")
    };
    let rest = raw
        .strip_prefix("/admin")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(|| bad("not under /admin"))?;
    // One trailing slash is tolerated (`/admin/assistants/`).
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for seg in rest.split('/').skip(1) {
        let decoded = percent_decode(seg).ok_or_else(|| bad("bad percent-encoding"))?;
        if decoded.is_empty() {
            return Err(bad("empty path segment"));
        }
        if decoded == "." || decoded == ".." {
            return Err(bad("dot segments are not allowed"));
        }
        if decoded.contains(['/', '\\']) {
            return Err(bad("encoded slashes are not allowed"));
        }
        if decoded.chars().any(char::is_control) {
            return Err(bad("control characters are not allowed"));
        }
        out.push(decoded);
    }
    Ok(out)
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Route one `/admin/...` request (already authorized).
pub fn handle(app: &App, req: &Request) -> Reply {
    let segments = match parse_path(&req.path) {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let [_, name, ..] = parts.as_slice()
        && !config::valid_name(name)
    {
        return ApiError::bad_request(format!("invalid name: {}", config::NAME_RULE))
            .with_code("invalid_name")
            .into();
    }
    let path = req.path.as_str();
    let method = req.method.as_str();
    let kind = match parts.first().copied() {
        Some("assistants") => Some(Kind::Assistant),
        Some("backends") => Some(Kind::Backend),
        Some("mcp") => Some(Kind::Mcp),
        _ => None,
    };
    if matches!(method, "PUT" | "DELETE") && kind.is_some() && app.snapshot().config.admin.read_only
    {
        return read_only(method, path);
    }
    match (method, kind, parts.as_slice()) {
        ("GET", None, ["config"]) => read::config(app),
        ("POST", None, ["reload"]) => change::reload(app),
        ("GET", Some(k), [_]) => read::list(app, k),
        ("GET", Some(Kind::Mcp), [_, name, "tools"]) => read::mcp_tools(app, name),
        ("GET", Some(k), [_, name]) => read::get_one(app, k, name),
        ("PUT", Some(k), [_, name]) => change::put(app, k, name, &req.body),
        ("DELETE", Some(k), [_, name]) => change::delete(app, k, name),
        (_, Some(_), [_] | [_, _]) | (_, None, ["config" | "reload"]) => {
            ApiError::method_not_allowed(format!("method {method} not allowed on {path}")).into()
        }
        _ => ApiError::not_found(format!("no admin route {method} {path}")).into(),
    }
}

/// 405 for a write with `admin.read_only: true` (the config is managed elsewhere, e.g. a
/// Kubernetes ConfigMap; `POST /admin/reload` and every read still work).
fn read_only(method: &str, path: &str) -> Reply {
    ApiError::method_not_allowed(format!(
        "{method} {path} refused: this replica's admin API is read-only (admin.read_only: true); \
         change the config file (e.g. the ConfigMap) instead, it is reloaded from there"
    ))
    .with_code("admin_read_only")
    .into()
}
