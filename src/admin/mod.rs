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
//! body as sent. A change that cannot be written back faithfully is refused as a whole (422,
//! nothing applied): a file with custom YAML tags (`!include`, `!secret`) or one that did not
//! parse as a plain document, or a written document that would not reload to the same config.
//! The file is written as a temp file created exclusively in the same directory with the
//! original mode (and owner, when running as root), fsynced, renamed over the original, and the
//! directory fsynced. Comments and formatting of the file are not kept.
//!
//! With `admin.read_only: true` every change (`PUT`, `DELETE`) is refused with 405
//! (`admin_read_only`) — the config is managed from its file, e.g. a ConfigMap — while reads,
//! `/admin/mcp/{name}/tools` and `POST /admin/reload` keep working.
//!
//! Runs on the HTTP worker that owns the admin request.

pub mod dump;

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::app::{App, Snapshot, Source};
use crate::config::{self, Config};
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
        ("GET", None, ["config"]) => {
            let snap = app.snapshot();
            let doc = app.document();
            let mut v = dump::config(&snap.config);
            for section in ["server", "apiman", "admin"] {
                as_written(&mut v[section], doc.get(section));
            }
            for kind in [Kind::Backend, Kind::Mcp] {
                if let Some(Value::Object(entries)) = v.get_mut(kind.section()) {
                    for (name, entry) in entries.iter_mut() {
                        as_written(entry, raw_entry(&doc, kind, name));
                    }
                }
            }
            if let Some(Value::Array(list)) = v.get_mut("assistants") {
                for entry in list.iter_mut() {
                    let name = entry["name"].as_str().unwrap_or_default().to_string();
                    as_written(entry, raw_entry(&doc, Kind::Assistant, &name));
                }
            }
            v["auth_providers"] = json!(snap.auth.provider_names());
            Reply::ok(v)
        }
        ("POST", None, ["reload"]) => reload(app),
        ("GET", Some(k), [_]) => list(app, k),
        ("GET", Some(Kind::Mcp), [_, name, "tools"]) => mcp_tools(app, name),
        ("GET", Some(k), [_, name]) => get_one(app, k, name),
        ("PUT", Some(k), [_, name]) => put(app, k, name, &req.body),
        ("DELETE", Some(k), [_, name]) => delete(app, k, name),
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

/// Fields whose values stay redacted even as written (a literal secret may sit there).
const SECRET_FIELDS: &[&str] = &[
    "api_key",
    "default_headers",
    "env",
    "headers",
    "secret",
    "proxy_api_keys",
];

/// Whether a value as written holds a `${VAR}` reference (or a `$$` escape) anywhere.
fn has_reference(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('$'),
        Value::Array(a) => a.iter().any(has_reference),
        Value::Object(o) => o.values().any(has_reference),
        _ => false,
    }
}

/// Show fields that hold `${VAR}` references as written instead of their expanded values, so
/// an admin response never echoes what a variable holds (a PUT body could otherwise read any
/// environment secret back). Secret fields stay redacted.
fn as_written(dumped: &mut Value, raw: Option<&Value>) {
    let (Some(Value::Object(raw)), Value::Object(out)) = (raw, dumped) else {
        return;
    };
    for (k, rv) in raw {
        if !SECRET_FIELDS.contains(&k.as_str()) && has_reference(rv) && out.contains_key(k) {
            out.insert(k.clone(), rv.clone());
        }
    }
}

/// One entry of the document as written.
fn raw_entry<'a>(doc: &'a Value, kind: Kind, name: &str) -> Option<&'a Value> {
    let section = doc.get(kind.section())?;
    match kind {
        Kind::Assistant => section
            .as_array()?
            .iter()
            .find(|a| a.get("name").and_then(Value::as_str) == Some(name)),
        Kind::Backend | Kind::Mcp => section.get(name),
    }
}

fn list(app: &App, kind: Kind) -> Reply {
    let snap = app.snapshot();
    let doc = app.document();
    let c = &snap.config;
    let written = |mut v: Value, name: &str| {
        as_written(&mut v, raw_entry(&doc, kind, name));
        v
    };
    Reply::ok(match kind {
        Kind::Assistant => Value::Array(
            c.assistants
                .iter()
                .map(|a| written(dump::assistant(a), &a.name))
                .collect(),
        ),
        Kind::Backend => Value::Object(
            c.backends
                .iter()
                .map(|(k, v)| (k.clone(), written(dump::backend(v), k)))
                .collect(),
        ),
        Kind::Mcp => Value::Object(
            c.mcp_servers
                .keys()
                .map(|k| (k.clone(), written(mcp_entry(&snap, k), k)))
                .collect(),
        ),
    })
}

fn mcp_entry(snap: &Snapshot, name: &str) -> Value {
    let mut v = snap
        .config
        .mcp_servers
        .get(name)
        .map(dump::mcp_server)
        .unwrap_or(Value::Null);
    if let Some(server) = snap.mcp.get(name) {
        v["status"] = dump::mcp_status(&server.status());
    }
    v
}

fn not_found(kind: Kind, name: &str) -> Reply {
    ApiError::not_found(format!("{} '{name}' not found", kind.noun())).into()
}

fn get_one(app: &App, kind: Kind, name: &str) -> Reply {
    let snap = app.snapshot();
    let c = &snap.config;
    let found = match kind {
        Kind::Assistant => c.assistant(name).map(dump::assistant),
        Kind::Backend => c.backends.get(name).map(dump::backend),
        Kind::Mcp => c
            .mcp_servers
            .contains_key(name)
            .then(|| mcp_entry(&snap, name)),
    };
    match found {
        Some(mut v) => {
            as_written(&mut v, raw_entry(&app.document(), kind, name));
            v["name"] = json!(name);
            Reply::ok(v)
        }
        None => not_found(kind, name),
    }
}

fn mcp_tools(app: &App, name: &str) -> Reply {
    let snap = app.snapshot();
    let Some(server) = snap.mcp.get(name) else {
        return not_found(Kind::Mcp, name);
    };
    match crate::tools::admin_listing(server) {
        Ok(listing) => Reply::ok(listing),
        Err(e) => ApiError::mcp_server(name, &server.redact(&e.to_string())).into(),
    }
}

fn invalid(what: String, problems: Vec<String>) -> ApiError {
    ApiError::unprocessable(format!("{what}: {}", problems.join("; "))).with_code("invalid_config")
}

fn put(app: &App, kind: Kind, name: &str, body: &[u8]) -> Reply {
    let body: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return ApiError::bad_request("body must be a JSON object").into(),
        Err(e) => return ApiError::bad_request(format!("body is not valid JSON: {e}")).into(),
    };
    let result = app.change(|snap, source| {
        let mut cfg: Config = (*snap.config).clone();
        let env = source.env.as_ref();
        let what = format!("invalid {} '{name}'", kind.noun());
        match kind {
            Kind::Assistant => {
                let a = config::assistant_from_value(name, &body, env)
                    .map_err(|p| invalid(what.clone(), p))?;
                match cfg.assistants.iter_mut().find(|x| x.name == name) {
                    Some(slot) => *slot = a,
                    None => cfg.assistants.push(a),
                }
            }
            Kind::Backend => {
                let b = config::backend_from_value(name, &body, env)
                    .map_err(|p| invalid(what.clone(), p))?;
                cfg.backends.insert(name.to_string(), b);
            }
            Kind::Mcp => {
                let m = config::mcp_server_from_value(name, &body, env)
                    .map_err(|p| invalid(what.clone(), p))?;
                cfg.mcp_servers.insert(name.to_string(), m);
            }
        }
        let problems = config::check_references(&cfg);
        if !problems.is_empty() {
            return Err(invalid(what, problems));
        }
        // As a loaded file does: a mock assistant without a model runs model "mock".
        for a in &mut cfg.assistants {
            if a.model.is_empty() {
                a.model = "mock".into();
            }
        }
        persist(&cfg, source, |doc| {
            set_entry(doc, kind, name, Some(body.clone()))
        })?;
        Ok((cfg, ()))
    });
    match result {
        Ok(()) => {
            log::info!("admin: {} '{name}' saved", kind.noun());
            get_one(app, kind, name)
        }
        Err(e) => e.into(),
    }
}

fn delete(app: &App, kind: Kind, name: &str) -> Reply {
    let result = app.change(|snap, source| {
        let mut cfg: Config = (*snap.config).clone();
        let users = |pred: &dyn Fn(&config::AssistantConfig) -> bool| -> Vec<String> {
            cfg.assistants
                .iter()
                .filter(|a| pred(a))
                .map(|a| a.name.clone())
                .collect()
        };
        let in_use = match kind {
            Kind::Assistant => vec![],
            Kind::Backend => users(&|a| a.backend == name),
            Kind::Mcp => users(&|a| a.mcp_servers.iter().any(|s| s == name)),
        };
        if !in_use.is_empty() {
            return Err(ApiError::conflict(format!(
                "{} '{name}' is used by assistant(s): {}",
                kind.noun(),
                in_use.join(", ")
            ))
            .with_code("in_use"));
        }
        let existed = match kind {
            Kind::Assistant => {
                let before = cfg.assistants.len();
                cfg.assistants.retain(|a| a.name != name);
                cfg.assistants.len() != before
            }
            Kind::Backend => cfg.backends.remove(name).is_some(),
            Kind::Mcp => cfg.mcp_servers.remove(name).is_some(),
        };
        if !existed {
            return Err(ApiError::not_found(format!(
                "{} '{name}' not found",
                kind.noun()
            )));
        }
        persist(&cfg, source, |doc| set_entry(doc, kind, name, None))?;
        Ok((cfg, ()))
    });
    match result {
        Ok(()) => {
            log::info!("admin: {} '{name}' deleted", kind.noun());
            Reply::ok(json!({"status": "deleted", "name": name}))
        }
        Err(e) => e.into(),
    }
}

fn reload(app: &App) -> Reply {
    match app.reload() {
        Ok(()) => {
            log::info!("admin: config reloaded");
            let snap = app.snapshot();
            Reply::ok(json!({"status": "reloaded", "assistants": snap.config.assistants.len()}))
        }
        Err(e) => invalid(
            "config reload refused, the running config stays".into(),
            e.problems,
        )
        .into(),
    }
}

/// Apply `edit` to the document as written and, with `admin.persist`, write it back. A change
/// that cannot be written back faithfully is refused (422) and nothing is applied.
fn persist(
    cfg: &Config,
    source: &mut Source,
    edit: impl FnOnce(&mut Value),
) -> Result<(), ApiError> {
    let mut doc = source.document.clone();
    edit(&mut doc);
    if let (true, Some(path)) = (cfg.admin.persist, source.path.as_deref()) {
        let refuse = |why: String| {
            ApiError::unprocessable(format!(
                "change not applied: admin.persist cannot write {} back faithfully: {why}",
                path.display()
            ))
            .with_code("persist_refused")
        };
        if let Some(why) = &source.persist_blocker {
            return Err(refuse(why.clone()));
        }
        let text = render(&doc).map_err(|e| refuse(e.to_string()))?;
        // The file we write must load to exactly the config we are about to run.
        match config::parse(&text, &path.display().to_string(), source.env.as_ref()) {
            Ok(reloaded) if reloaded == *cfg => {}
            Ok(_) => {
                return Err(refuse(
                    "the written file would load to a different config".into(),
                ));
            }
            Err(e) => {
                return Err(refuse(format!(
                    "the written file would not load: {}",
                    e.problems.join("; ")
                )));
            }
        }
        write_atomically(path, &text).map_err(|e| {
            ApiError::internal(format!(
                "change not applied: cannot write {}: {e}",
                path.display()
            ))
        })?;
    }
    source.document = doc;
    Ok(())
}

/// Set (or remove, with `None`) one entry in the raw config document.
fn set_entry(doc: &mut Value, kind: Kind, name: &str, body: Option<Value>) {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let key = match kind {
        Kind::Assistant => "assistants",
        Kind::Backend => "backends",
        Kind::Mcp => "mcp_servers",
    };
    let section = &mut doc[key];
    if kind == Kind::Assistant {
        if !section.is_array() {
            *section = Value::Array(vec![]);
        }
        let Value::Array(list) = section else { return };
        let pos = list
            .iter()
            .position(|a| a.get("name").and_then(Value::as_str) == Some(name));
        match (body, pos) {
            (Some(mut b), Some(i)) => {
                b["name"] = json!(name);
                list[i] = b;
            }
            (Some(mut b), None) => {
                b["name"] = json!(name);
                list.push(b);
            }
            (None, Some(i)) => {
                list.remove(i);
            }
            (None, None) => {}
        }
    } else {
        if !section.is_object() {
            *section = Value::Object(Map::new());
        }
        let Value::Object(map) = section else { return };
        match body {
            Some(mut b) => {
                if let Some(o) = b.as_object_mut() {
                    o.remove("name");
                }
                map.insert(name.to_string(), b);
            }
            None => {
                map.remove(name);
            }
        }
    }
}

/// The document as YAML text, as `admin.persist` writes it.
fn render(doc: &Value) -> Result<String, serde_yaml::Error> {
    let text = serde_yaml::to_string(doc)?;
    Ok(format!(
        "# Written by aiproxy's admin API (admin.persist: true); comments are not kept.\n{text}"
    ))
}

/// Replace `path` with `text` so that readers never see half a file and a crash leaves either
/// the old or the new file: a temp file created exclusively (`O_EXCL`) in the same directory
/// with the original's mode (and owner, when running as root), written and fsynced, renamed
/// over the original, then the directory fsynced.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.yaml".into());
    let tmp = dir.join(format!(".{file_name}.aiproxy-tmp.{}", std::process::id()));
    // A stale temp file of ours (a crash mid-write) is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set exactly the original.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if crate::sys::process::is_root() {
            std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_entry_upserts_and_removes_keeping_references() {
        let mut doc = json!({"assistants": [{"name": "a", "backend": "x"}], "backends": {"x": {"api_key": "${KEY}"}}});
        set_entry(
            &mut doc,
            Kind::Assistant,
            "b",
            Some(json!({"backend": "x", "model": "m"})),
        );
        set_entry(
            &mut doc,
            Kind::Assistant,
            "a",
            Some(json!({"backend": "y"})),
        );
        set_entry(
            &mut doc,
            Kind::Backend,
            "y",
            Some(json!({"base_url": "http://h", "api_key": "${OTHER}"})),
        );
        assert_eq!(
            doc["assistants"],
            json!([{"name": "a", "backend": "y"}, {"backend": "x", "model": "m", "name": "b"}])
        );
        assert_eq!(doc["backends"]["y"]["api_key"], "${OTHER}");
        set_entry(&mut doc, Kind::Backend, "x", None);
        set_entry(&mut doc, Kind::Assistant, "a", None);
        assert!(doc["backends"].get("x").is_none());
        assert_eq!(doc["assistants"].as_array().unwrap().len(), 1);
        let mut empty = Value::Null;
        set_entry(&mut empty, Kind::Mcp, "m", Some(json!({"command": "c"})));
        assert_eq!(empty, json!({"mcp_servers": {"m": {"command": "c"}}}));
    }
}
