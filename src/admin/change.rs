//! The admin API's changes: `PUT` and `DELETE` of assistants, backends and MCP servers, and
//! `POST /admin/reload`. Each change is validated like the config file (`${VAR}` expanded in
//! bodies, unknown fields and unknown references → 422; deleting a backend or MCP server still
//! in use → 409 naming the assistants) and applied by swapping the registry snapshot under the
//! app's change lock ([`App::change`]), so requests already running finish on what they started
//! with; with `admin.persist` it is also written back to the file ([`super::persist`]).

use serde_json::{Value, json};

use super::persist::{persist, set_entry};
use super::read::get_one;
use super::{Kind, Reply};
use crate::app::App;
use crate::config::{self, Config};
use crate::error::ApiError;

fn invalid(what: String, problems: Vec<String>) -> ApiError {
    ApiError::unprocessable(format!("{what}: {}", problems.join("; "))).with_code("invalid_config")
}

pub(super) fn put(app: &App, kind: Kind, name: &str, body: &[u8]) -> Reply {
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

pub(super) fn delete(app: &App, kind: Kind, name: &str) -> Reply {
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

pub(super) fn reload(app: &App) -> Reply {
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
