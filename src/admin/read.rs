//! The admin API's reads: the running config (`GET /admin/config`), the lists and single
//! entries of assistants, backends and MCP servers (with each MCP server's state), and an MCP
//! server's tool listing. Values are shown as written: fields holding `${VAR}` references show
//! the reference, never what the variable holds, and secrets stay redacted ([`super::dump`]).

use serde_json::{Value, json};

use super::{Kind, Reply, dump};
use crate::app::{App, Snapshot};
use crate::error::ApiError;

/// `GET /admin/config`: the whole running config, as written.
pub(super) fn config(app: &App) -> Reply {
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

pub(super) fn list(app: &App, kind: Kind) -> Reply {
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

pub(super) fn not_found(kind: Kind, name: &str) -> Reply {
    ApiError::not_found(format!("{} '{name}' not found", kind.noun())).into()
}

pub(super) fn get_one(app: &App, kind: Kind, name: &str) -> Reply {
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

pub(super) fn mcp_tools(app: &App, name: &str) -> Reply {
    let snap = app.snapshot();
    let Some(server) = snap.mcp.get(name) else {
        return not_found(Kind::Mcp, name);
    };
    match crate::tools::admin_listing(server) {
        Ok(listing) => Reply::ok(listing),
        Err(e) => ApiError::mcp_server(name, &server.redact(&e.to_string())).into(),
    }
}
