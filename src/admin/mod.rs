//! The admin API (SPEC §8): read and change assistants, backends and MCP servers while the
//! gateway serves traffic, and reload the config file.
//!
//! Every change is validated like the config file (`${VAR}` expanded in bodies, unknown fields
//! and unknown references → 422; deleting a backend or MCP server still in use → 409 naming the
//! assistants) and applied by swapping the registry snapshot under the app's change lock, so
//! requests already running finish on what they started with. With `admin.persist: true` the
//! change is also written back to the config file (temp file + rename), keeping the body as
//! sent, so `${VAR}` references stay references. Responses never contain a secret (`dump`).
//!
//! Runs on the HTTP worker that owns the admin request.

pub mod dump;

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::app::{App, Snapshot, Source};
use crate::config::{self, Config};
use crate::error::ApiError;
use crate::server::http::Request;

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
    fn noun(self) -> &'static str {
        match self {
            Kind::Assistant => "assistant",
            Kind::Backend => "backend",
            Kind::Mcp => "MCP server",
        }
    }
}

/// Route one `/admin/...` request (already authorized).
pub fn handle(app: &App, req: &Request) -> Reply {
    let path = req.path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').skip(2).collect(); // after "/admin"
    let method = req.method.as_str();
    let kind = match parts.first().copied() {
        Some("assistants") => Some(Kind::Assistant),
        Some("backends") => Some(Kind::Backend),
        Some("mcp") => Some(Kind::Mcp),
        _ => None,
    };
    match (method, kind, parts.as_slice()) {
        ("GET", None, ["config"]) => {
            let snap = app.snapshot();
            let mut v = dump::config(&snap.config);
            v["auth_providers"] = json!(snap.auth.provider_names());
            Reply::ok(v)
        }
        ("POST", None, ["reload"]) => reload(app),
        ("GET", Some(k), [_]) => list(app, k),
        ("GET", Some(Kind::Mcp), [_, name, "tools"]) => mcp_tools(app, name),
        ("GET", Some(k), [_, name]) => get_one(app, k, name),
        ("PUT", Some(k), [_, name]) => put(app, k, name, &req.body),
        ("DELETE", Some(k), [_, name]) => delete(app, k, name),
        (_, Some(_), [_] | [_, _]) | (_, None, ["config" | "reload"]) => ApiError::new(
            405,
            "invalid_request_error",
            format!("method {method} not allowed on {path}"),
        )
        .into(),
        _ => ApiError::not_found(format!("no admin route {method} {path}")).into(),
    }
}

fn list(app: &App, kind: Kind) -> Reply {
    let snap = app.snapshot();
    let c = &snap.config;
    Reply::ok(match kind {
        Kind::Assistant => Value::Array(c.assistants.iter().map(dump::assistant).collect()),
        Kind::Backend => Value::Object(
            c.backends
                .iter()
                .map(|(k, v)| (k.clone(), dump::backend(v)))
                .collect(),
        ),
        Kind::Mcp => Value::Object(
            c.mcp_servers
                .keys()
                .map(|k| (k.clone(), mcp_entry(&snap, k)))
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
    match server.tools() {
        Ok(tools) => {
            let list: Vec<Value> = tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
                .collect();
            Reply::ok(json!({"name": name, "tools": list}))
        }
        Err(e) => ApiError::new(502, "upstream_error", format!("MCP server '{name}': {e}")).into(),
    }
}

fn invalid(what: String, problems: Vec<String>) -> ApiError {
    ApiError::new(
        422,
        "invalid_request_error",
        format!("{what}: {}", problems.join("; ")),
    )
    .with_code("invalid_config")
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
            return Err(ApiError::new(
                409,
                "invalid_request_error",
                format!(
                    "{} '{name}' is used by assistant(s): {}",
                    kind.noun(),
                    in_use.join(", ")
                ),
            )
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

/// Apply `edit` to the document as written and, with `admin.persist`, write it back.
fn persist(
    cfg: &Config,
    source: &mut Source,
    edit: impl FnOnce(&mut Value),
) -> Result<(), ApiError> {
    let mut doc = source.document.clone();
    edit(&mut doc);
    if let (true, Some(path)) = (cfg.admin.persist, source.path.as_deref()) {
        write_atomically(path, &doc).map_err(|e| {
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

/// Write YAML next to the file and rename it into place, so readers never see half a file.
fn write_atomically(path: &Path, doc: &Value) -> std::io::Result<()> {
    let text = serde_yaml::to_string(doc).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("yaml.tmp.{}", std::process::id()));
    std::fs::write(
        &tmp,
        format!("# Written by aiproxy's admin API (admin.persist: true).\n{text}"),
    )?;
    std::fs::rename(&tmp, path)
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
