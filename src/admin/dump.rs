//! The running config as JSON in the config-file schema, for admin responses. Every secret is
//! redacted: backend `api_key` and `default_headers` values, MCP `env` and `headers` values,
//! the Apiman `secret`, proxy keys (only their count shows).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::config::{
    ApimanMode, AssistantConfig, BackendConfig, BackendKind, Config, McpServerConfig, McpTransport,
};
use crate::mcp::{ServerState, ServerStatus};
use crate::secret::{REDACTED, Secret};

fn secs(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

fn redacted_map(m: &BTreeMap<String, Secret>) -> Value {
    Value::Object(
        m.keys()
            .map(|k| (k.clone(), json!(REDACTED)))
            .collect::<Map<String, Value>>(),
    )
}

pub fn mcp_server(c: &McpServerConfig) -> Value {
    let mut v = match &c.transport {
        McpTransport::Stdio {
            command,
            args,
            env,
            cwd,
            inherit_env,
        } => json!({
            "transport": "stdio",
            "command": command,
            "args": args,
            "env": redacted_map(env),
            "cwd": cwd.as_ref().map(|p| p.display().to_string()),
            "inherit_env": inherit_env,
        }),
        McpTransport::Sse { url, headers } => {
            json!({"transport": "sse", "url": url, "headers": redacted_map(headers)})
        }
        McpTransport::StreamableHttp { url, headers } => {
            json!({"transport": "streamable-http", "url": url, "headers": redacted_map(headers)})
        }
    };
    v["description"] = json!(c.description);
    v["startup_timeout"] = secs(c.startup_timeout);
    v["call_timeout"] = secs(c.call_timeout);
    v["max_concurrency"] = json!(c.max_concurrency);
    if let Some(ca) = &c.ca_file {
        v["ca_file"] = json!(ca.display().to_string());
    }
    v
}

pub fn mcp_status(s: &ServerStatus) -> Value {
    let state = match s.state {
        ServerState::Idle => "idle",
        ServerState::Starting => "starting",
        ServerState::Ready => "ready",
        ServerState::Failed => "failed",
        ServerState::Stopped => "stopped",
    };
    json!({"state": state, "last_error": s.last_error, "restarts": s.restarts, "tool_count": s.tool_count})
}

pub fn backend(c: &BackendConfig) -> Value {
    let kind = match c.kind {
        BackendKind::OpenAi => "openai",
        BackendKind::OpenAiResponses => "openai-responses",
        BackendKind::Anthropic => "anthropic",
        BackendKind::Mock => "mock",
    };
    let mut v = json!({
        "kind": kind,
        "base_url": c.base_url,
        "api_key": c.api_key.as_ref().map(|_| REDACTED),
        "default_headers": redacted_map(&c.default_headers),
        "timeout": secs(c.timeout),
    });
    if c.kind == BackendKind::Anthropic {
        v["prompt_caching"] = json!(c.prompt_caching);
    }
    v
}

pub fn assistant(a: &AssistantConfig) -> Value {
    let mut v = json!({
        "name": a.name,
        "backend": a.backend,
        "model": a.model,
        "description": a.description,
        "system_prompt": a.system_prompt,
        "mcp_servers": a.mcp_servers,
        "max_tool_iterations": a.max_tool_iterations,
        "temperature": a.temperature,
        "top_p": a.top_p,
        "max_tokens": a.max_tokens,
        "extra_body": a.extra_body,
        "allowed_tools": a.allowed_tools,
        "denied_tools": a.denied_tools,
    });
    if a.vision {
        v["vision"] = json!(true);
    }
    if !a.responses_mcp_items {
        v["responses_mcp_items"] = json!(false);
    }
    v
}

pub fn config(c: &Config) -> Value {
    let s = &c.server;
    let ap = &c.apiman;
    json!({
        "server": {
            "listen": s.listen,
            "workers": s.workers,
            "max_in_flight": s.max_in_flight,
            "max_connections": s.max_connections,
            "max_body_bytes": s.max_body_bytes,
            "request_timeout": secs(s.request_timeout),
            "idle_timeout": secs(s.idle_timeout),
            "drain_timeout": secs(s.drain_timeout),
        },
        "mcp_servers": c.mcp_servers.iter().map(|(k, v)| (k.clone(), mcp_server(v))).collect::<Map<_, _>>(),
        "backends": c.backends.iter().map(|(k, v)| (k.clone(), backend(v))).collect::<Map<_, _>>(),
        "assistants": c.assistants.iter().map(assistant).collect::<Vec<_>>(),
        "proxy_api_keys": c.proxy_api_keys.iter().map(|_| REDACTED).collect::<Vec<_>>(),
        "apiman": {
            "enabled": ap.enabled,
            "mode": match ap.mode { ApimanMode::GatewayProbe => "gateway_probe", ApimanMode::TrustedHeader => "trusted_header" },
            "gateway_url": ap.gateway_url,
            "probe_api": ap.probe_api,
            "probe_path": ap.probe_path,
            "api_key_header": ap.api_key_header,
            "cache_ttl": secs(ap.cache_ttl),
            "timeout": secs(ap.timeout),
            "header": ap.header,
            "secret": ap.secret.as_ref().map(|_| REDACTED),
        },
        "admin": {"persist": c.admin.persist},
    })
}
