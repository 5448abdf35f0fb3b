//! The tools one request may use: the MCP tools of its assistant under their exposed names
//! (`naming`), and their execution (`result` maps what comes back).
//!
//! A [`ToolSet`] is built per request from the snapshot's MCP servers: servers are started
//! lazily and concurrently (scoped threads, each bounded by its `startup_timeout`); a server that
//! is down is reported as degraded (`X-Aiproxy-Degraded`) instead of failing the request, and
//! its last known tools are still offered. A failed call is told to the model in short, stable
//! words naming the server (`server 'x' is unavailable; try again later`, `server 'x' stopped
//! (exit status 1)`); the details go to the log, scrubbed of secrets, with the request id.
//! Arguments must be a JSON object (`null` and `""` mean `{}`). All tool
//! calls of one turn run concurrently in scoped threads (at most [`MAX_PARALLEL_CALLS`] at a
//! time; each server also bounds its own concurrency), so no thread outlives its request, and
//! results come back in the model's order. Each call is timed and counted in the gateway's
//! metrics when the set carries them, and written to the audit log when there is one
//! ([`ToolSet::with_audit`]; the line is queued, never written on the request's thread).
//!
//! Hostile peers: at most `max_tools` tools of each server are offered (the first of its
//! listing; default 1000, one warning per listing), and at most the assistant's
//! `max_tool_calls_per_turn` calls of one turn run (default 128); each call beyond gets a
//! `[tool error]` result. Names and lookups are maps, linear in the number of tools.
//! [`printable`] escapes server-sent text for terminals.
//!
//! Layout: this file builds the set (listing, naming, filters, degraded servers) and answers
//! the admin tool listing; `call` runs the calls of a turn (arguments, concurrency, metrics,
//! audit, trace spans, failure texts); [`naming`] gives exposed names; [`result`] maps what
//! comes back.

mod call;
pub mod naming;
pub mod result;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use serde_json::{Map, Value, json};

use crate::api::openai::{FunctionDef, Tool};
use crate::audit::AuditLog;
use crate::mcp::{self, Supervisor};
use crate::metrics::Metrics;

pub use call::{ArgError, parse_arguments};

/// Tool calls of one turn running at once.
pub const MAX_PARALLEL_CALLS: usize = 16;
/// Tool calls run per turn unless the assistant says otherwise (`max_tool_calls_per_turn`).
pub const DEFAULT_MAX_CALLS: usize = 128;

/// Per server name, the listing last warned about (by address), so a capped listing is
/// reported once, not on every request. Bounded by the number of configured server names.
static CAPPED: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

fn warn_capped_once(server: &str, tools: &Arc<Vec<mcp::ToolInfo>>, cap: usize) {
    let listing = Arc::as_ptr(tools) as usize;
    let mut warned = CAPPED.lock();
    if warned.len() >= 1024 {
        warned.clear();
    }
    match warned.iter_mut().find(|(name, _)| name == server) {
        Some((_, last)) if *last == listing => return,
        Some((_, last)) => *last = listing,
        None => warned.push((server.to_string(), listing)),
    }
    log::warn!(
        "mcp server '{server}' lists {} tools; offering the first {cap} (max_tools)",
        tools.len()
    );
}

struct Route {
    server: Arc<Supervisor>,
    tool: String,
}

pub struct ToolSet {
    /// OpenAI definitions of the MCP tools, in server then listing order.
    pub tools: Vec<Tool>,
    routes: HashMap<String, Route>,
    /// Servers that are down (could not start or be listed), with the reason (redacted; for
    /// logs and the `X-Aiproxy-Degraded` header, never for the model).
    pub degraded: Vec<(String, String)>,
    /// The servers behind `degraded`: a call under their prefix is answered as unavailable.
    down: Vec<Arc<Supervisor>>,
    /// Servers found down by a call of this request (could not be started or reached, or
    /// stopped mid-call), in the order found; at most one entry per server of the set.
    failed: Mutex<Vec<String>>,
    /// The request this set serves, for MCP log lines of its call threads.
    request: Option<Arc<str>>,
    metrics: Option<Arc<Metrics>>,
    /// MCP tool calls run per turn (the assistant's `max_tool_calls_per_turn`).
    max_calls: usize,
    /// Where every call is also written, with who made it.
    audit: Option<(Arc<AuditLog>, Who)>,
    /// The trace span of the request this set serves: each call is a child span of it.
    trace: Option<crate::telemetry::Ctx>,
}

/// Who a request's tool calls are made for, as the audit log names them.
pub struct Who {
    pub request_id: String,
    /// The API key's configured name (never the key).
    pub key: Option<String>,
    pub assistant: String,
}

impl ToolSet {
    pub fn empty() -> ToolSet {
        ToolSet {
            tools: Vec::new(),
            routes: HashMap::new(),
            degraded: Vec::new(),
            down: Vec::new(),
            failed: Mutex::new(Vec::new()),
            request: None,
            metrics: None,
            max_calls: DEFAULT_MAX_CALLS,
            audit: None,
            trace: None,
        }
    }

    /// Run at most `n` tool calls per turn (at least one).
    pub fn with_max_calls(mut self, n: usize) -> ToolSet {
        self.max_calls = n.max(1);
        self
    }

    /// Count and time every call of this set in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> ToolSet {
        self.metrics = Some(metrics);
        self
    }

    /// Also write every call of this set to the audit log, if there is one (lines it cannot
    /// queue are counted in the metrics, when the set carries them).
    /// `who` is asked only when there is a log (no per-request strings otherwise).
    pub fn with_audit(mut self, log: Option<Arc<AuditLog>>, who: impl FnOnce() -> Who) -> ToolSet {
        self.audit = log.map(|l| (l, who()));
        self
    }

    /// Start (if needed) and list the given servers, apply the assistant's filters. A server
    /// that is down is reported in [`ToolSet::degraded`]; its last known tools (if it ever
    /// listed any) are still offered, and calls to them or to any other name under its prefix
    /// get `server 'x' is unavailable; try again later`.
    pub fn build(servers: &[Arc<Supervisor>], allowed: &[String], denied: &[String]) -> ToolSet {
        let request = mcp::logctx::current();
        let listed: Vec<Result<Arc<Vec<mcp::ToolInfo>>, mcp::Error>> = match servers {
            [] => Vec::new(),
            [one] => vec![one.tools()],
            many => std::thread::scope(|s| {
                let handles: Vec<_> = many
                    .iter()
                    .map(|srv| {
                        let request = request.clone();
                        s.spawn(move || {
                            let _ctx = mcp::logctx::enter_shared(request);
                            srv.tools()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(mcp::Error::Start("panicked while starting".into()))
                        })
                    })
                    .collect()
            }),
        };
        let mut set = ToolSet::empty();
        set.request = request;
        set.trace = crate::telemetry::current();
        let mut known: Vec<(&Arc<Supervisor>, Arc<Vec<mcp::ToolInfo>>)> = Vec::new();
        for (srv, res) in servers.iter().zip(listed) {
            let tools = match res {
                Ok(tools) => tools,
                Err(e) => {
                    let last = srv.last_known_tools();
                    let detail = srv.redact(&e.to_string());
                    log::warn!(
                        "{}mcp server '{}' is down ({}); {}",
                        mcp::logctx::prefix(),
                        srv.name(),
                        printable(mcp::without_stderr(&detail)),
                        if last.is_some() {
                            "offering its last known tools"
                        } else {
                            "none of its tools offered"
                        }
                    );
                    set.degraded.push((srv.name().to_string(), detail));
                    set.down.push(Arc::clone(srv));
                    match last {
                        Some(t) => t,
                        None => continue,
                    }
                }
            };
            let cap = srv.max_tools();
            if tools.len() > cap {
                warn_capped_once(srv.name(), &tools, cap);
            }
            known.push((srv, tools));
        }
        let entries: Vec<(&Arc<Supervisor>, &mcp::ToolInfo)> = known
            .iter()
            .flat_map(|(srv, tools)| tools.iter().take(srv.max_tools()).map(move |t| (*srv, t)))
            .collect();
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(s, t)| (s.name(), t.name.as_str()))
            .collect();
        let names = naming::assign_names(&pairs);
        for ((srv, info), name) in entries.into_iter().zip(names) {
            let plain = naming::plain_name(srv.name(), &info.name);
            if !naming::tool_allowed(&[&name, &plain], allowed, denied) {
                continue;
            }
            let mut description = info.description.clone().unwrap_or_default();
            if name != plain {
                // A shortened or suffixed name: the server's name tells similar tools apart.
                description = format!("(MCP server '{}') {description}", srv.name())
                    .trim_end()
                    .to_string();
            }
            set.tools.push(Tool {
                kind: "function".into(),
                function: FunctionDef {
                    name: name.clone(),
                    description: Some(description),
                    parameters: Some(Arc::clone(&info.parameters)),
                    rest: Map::new(),
                },
            });
            set.routes.insert(
                name,
                Route {
                    server: Arc::clone(srv),
                    tool: info.name.clone(),
                },
            );
        }
        set
    }

    /// Every server of this request found down, for `X-Aiproxy-Degraded`: those down when the
    /// set was built, then those a call found down since (a server that could not be started
    /// or reached, or that stopped during a call), each once.
    pub fn degraded_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.degraded.iter().map(|(n, _)| n.clone()).collect();
        for name in self.failed.lock().iter() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// A call found `server` down (bounded: each server of the set is noted once).
    fn note_down(&self, server: &str) {
        let mut failed = self.failed.lock();
        if !failed.iter().any(|n| n == server) {
            failed.push(server.to_string());
        }
    }

    /// The MCP server and original tool name behind an exposed name.
    pub fn origin(&self, exposed: &str) -> Option<(&str, &str)> {
        self.routes
            .get(exposed)
            .map(|r| (r.server.name(), r.tool.as_str()))
    }
}

/// `GET /admin/mcp/{name}/tools`: every tool object exactly as the server listed it (`tool`),
/// with aiproxy's own fields beside it (`aiproxy`: the exposed name, whether it is offered,
/// why not). Names are those the server's tools get on their own; an assistant that also
/// uses a server with colliding names gets suffixed ones (see `aiproxy check --connect`), and
/// its `allowed_tools` / `denied_tools` apply on top.
pub fn admin_listing(server: &Supervisor) -> Result<Value, mcp::Error> {
    let (tools, left_out) = server.listing()?;
    let cap = server.max_tools();
    let pairs: Vec<(&str, &str)> = tools
        .iter()
        .take(cap)
        .map(|t| (server.name(), t.name.as_str()))
        .collect();
    let names = naming::assign_names(&pairs);
    let mut out: Vec<Value> = Vec::with_capacity(tools.len() + left_out.len());
    for (i, t) in tools.iter().enumerate() {
        let aiproxy = match names.get(i) {
            Some(name) => json!({"exposed_name": name, "offered": true, "reason": null}),
            None => json!({
                "exposed_name": null,
                "offered": false,
                "reason": format!("beyond the first {cap} tools of the server (max_tools)")
            }),
        };
        out.push(json!({"tool": t.raw, "aiproxy": aiproxy}));
    }
    for l in left_out.iter() {
        out.push(json!({
            "tool": l.raw,
            "aiproxy": {"exposed_name": null, "offered": false, "reason": l.reason}
        }));
    }
    Ok(json!({"name": server.name(), "tools": out}))
}

/// `s` safe to print on a terminal: control characters (ESC, CR, BEL, …) and invisible
/// direction/format characters as `\u{..}` escapes (`\r`, `\n`, `\t` for those), backslashes
/// doubled; everything else as is.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let invisible = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || invisible || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
