//! Readers for the three kinds of named item — MCP servers, backends, assistants — shared by the
//! config file and the admin API's PUT bodies. Each reads its fields in document order, then
//! checks the rules that span fields (required fields, fields that belong to another transport
//! or kind). A reader always returns a best-effort value (invalid fields fall back to defaults)
//! so cross-reference checks still run on a broken file; the caller discards it if any problem
//! was recorded. Pure functions; no threads.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value as Yaml;

use super::numbers::{count, duration, integer, number};
use super::raw::{
    Path, Problems, boolean, check_http_url, choice, elements, fields, header_map, json_object,
    name_list, non_empty, secret_map, string, string_list,
};
use super::{AssistantConfig, BackendConfig, BackendKind, McpServerConfig, McpTransport};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Stdio,
    Sse,
    Http,
}

const TRANSPORTS: &[(&str, Transport)] = &[
    ("stdio", Transport::Stdio),
    ("sse", Transport::Sse),
    ("http", Transport::Http),
    ("streamable-http", Transport::Http),
];

const BACKEND_KINDS: &[(&str, BackendKind)] = &[
    ("openai", BackendKind::OpenAi),
    ("openai-responses", BackendKind::OpenAiResponses),
    ("anthropic", BackendKind::Anthropic),
    ("mock", BackendKind::Mock),
];

pub(super) const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Bounds the calls (and so the threads and pipes) one server can hold at once.
const MAX_CONCURRENCY_LIMIT: u64 = 1024;
pub(super) const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(300);
pub(super) const DEFAULT_MAX_TOOL_ITERATIONS: u32 = 8;
/// Tools offered from one MCP server; the rest of a longer listing is left out (with a warning).
pub(super) const DEFAULT_MAX_TOOLS: usize = 1000;
const MAX_TOOLS_LIMIT: u64 = 100_000;
/// MCP tool calls executed in one turn; calls beyond get a tool error.
pub(super) const DEFAULT_MAX_TOOL_CALLS_PER_TURN: usize = 128;
const MAX_TOOL_CALLS_LIMIT: u64 = 4096;

/// Whether a key has a value (`key:` with nothing after it reads as not set). Fields that belong
/// to another transport are rejected when given, even if their value is also malformed.
fn given(v: &Yaml) -> bool {
    !v.is_null()
}

/// `None` for an empty or all-blank string: `${VAR:-}` expanding to "" means "not set".
fn blank_to_none(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

pub(super) fn read_mcp_server(problems: &mut Problems, path: &Path, v: &Yaml) -> McpServerConfig {
    let mut transport = Some(Transport::Stdio);
    let mut transport_name = "stdio".to_string();
    let mut description = None;
    let (mut command, mut args, mut env, mut cwd, mut inherit_env) =
        (None, Vec::new(), Default::default(), None, None);
    let (mut url, mut headers) = (None, Default::default());
    let mut stdio_fields = Vec::new();
    let mut remote_fields = Vec::new();
    let mut startup_timeout = None;
    let mut call_timeout = None;
    let mut max_concurrency = None;
    let mut max_tools = None;
    let mut ca_file = None;

    let Some(fields) = fields(problems, path, v) else {
        return McpServerConfig {
            transport: McpTransport::Stdio {
                command: String::new(),
                args: Vec::new(),
                env: Default::default(),
                cwd: None,
                inherit_env: false,
            },
            description: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_tools: DEFAULT_MAX_TOOLS,
            ca_file: None,
        };
    };
    for (key, val) in fields {
        let p = path.key(&key);
        match key.as_str() {
            // `transport:` with no value keeps the default.
            "transport" if given(val) => {
                transport = choice(problems, &p, val, TRANSPORTS);
                transport_name = val.as_str().unwrap_or_default().trim().to_string();
            }
            "transport" => {}
            "description" => description = string(problems, &p, val),
            "command" => command = string(problems, &p, val),
            "args" => args = string_list(problems, &p, val),
            "env" => env = secret_map(problems, &p, val),
            "cwd" => cwd = string(problems, &p, val),
            "inherit_env" => inherit_env = boolean(problems, &p, val),
            "url" => url = string(problems, &p, val),
            "headers" => headers = header_map(problems, &p, val),
            "startup_timeout" => startup_timeout = duration(problems, &p, val),
            "call_timeout" => call_timeout = duration(problems, &p, val),
            "max_concurrency" => {
                max_concurrency = count(problems, &p, val, 1, MAX_CONCURRENCY_LIMIT);
            }
            "max_tools" => max_tools = count(problems, &p, val, 1, MAX_TOOLS_LIMIT),
            "ca_file" => ca_file = string(problems, &p, val),
            _ => problems.unknown(&p),
        }
        match key.as_str() {
            "command" | "args" | "env" | "cwd" | "inherit_env" if given(val) => {
                stdio_fields.push(key);
            }
            "url" | "headers" | "ca_file" if given(val) => remote_fields.push(key),
            _ => {}
        }
    }

    let transport = match transport {
        Some(Transport::Stdio) => {
            for key in &remote_fields {
                problems.add(
                    &path.key(key),
                    "not valid for transport stdio (only for sse, http and streamable-http)",
                );
            }
            let command = match command {
                None => {
                    problems.add(
                        &path.key("command"),
                        "missing required field (transport stdio)",
                    );
                    String::new()
                }
                Some(c) if c.trim().is_empty() => {
                    problems.add(&path.key("command"), "must not be empty");
                    String::new()
                }
                Some(c) => c,
            };
            McpTransport::Stdio {
                command,
                args,
                env,
                cwd: blank_to_none(cwd).map(PathBuf::from),
                inherit_env: inherit_env.unwrap_or(false),
            }
        }
        Some(kind @ (Transport::Sse | Transport::Http)) => {
            for key in &stdio_fields {
                problems.add(
                    &path.key(key),
                    format!("not valid for transport {transport_name} (stdio only)"),
                );
            }
            let url_path = path.key("url");
            let url = match blank_to_none(url) {
                None => {
                    problems.add(
                        &url_path,
                        format!("missing required field (transport {transport_name})"),
                    );
                    String::new()
                }
                Some(u) => {
                    check_http_url(problems, &url_path, &u);
                    u
                }
            };
            if kind == Transport::Sse {
                McpTransport::Sse { url, headers }
            } else {
                McpTransport::StreamableHttp { url, headers }
            }
        }
        // The transport itself was invalid (already reported): which other fields are wrong
        // is unknowable, so nothing more is said.
        None => McpTransport::Stdio {
            command: command.unwrap_or_default(),
            args,
            env,
            cwd: None,
            inherit_env: false,
        },
    };

    McpServerConfig {
        transport,
        description: blank_to_none(description),
        startup_timeout: startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
        call_timeout: call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
        max_concurrency: max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
        max_tools: max_tools.unwrap_or(DEFAULT_MAX_TOOLS),
        ca_file: blank_to_none(ca_file).map(PathBuf::from),
    }
}

pub(super) fn read_backend(problems: &mut Problems, path: &Path, v: &Yaml) -> BackendConfig {
    let mut kind = Some(BackendKind::OpenAi);
    let mut base_url = None;
    let mut api_key = None;
    let mut default_headers = Default::default();
    let mut timeout = None;
    let mut prompt_caching = None;

    let Some(fields) = fields(problems, path, v) else {
        return BackendConfig {
            kind: BackendKind::OpenAi,
            base_url: String::new(),
            api_key: None,
            default_headers: Default::default(),
            timeout: DEFAULT_BACKEND_TIMEOUT,
            prompt_caching: true,
        };
    };
    for (key, val) in fields {
        let p = path.key(&key);
        match key.as_str() {
            "kind" if given(val) => kind = choice(problems, &p, val, BACKEND_KINDS),
            "kind" => {}
            "base_url" => base_url = string(problems, &p, val),
            "api_key" => api_key = string(problems, &p, val),
            "default_headers" => default_headers = header_map(problems, &p, val),
            "timeout" => timeout = duration(problems, &p, val),
            "prompt_caching" => prompt_caching = boolean(problems, &p, val),
            _ => problems.unknown(&p),
        }
    }

    let url_path = path.key("base_url");
    let base_url = match blank_to_none(base_url) {
        Some(u) => {
            // `https://api.openai.com/v1/` and `…/v1` must build the same request URLs.
            let u = u.trim().trim_end_matches('/').to_string();
            check_http_url(problems, &url_path, &u);
            u
        }
        None => {
            if matches!(
                kind,
                Some(BackendKind::OpenAi | BackendKind::OpenAiResponses | BackendKind::Anthropic)
            ) {
                problems.missing(&url_path);
            }
            String::new()
        }
    };
    if prompt_caching.is_some() && !matches!(kind, Some(BackendKind::Anthropic) | None) {
        problems.add(&path.key("prompt_caching"), "only valid for kind anthropic");
    }

    BackendConfig {
        kind: kind.unwrap_or(BackendKind::OpenAi),
        base_url,
        api_key: blank_to_none(api_key).map(crate::secret::Secret::new),
        default_headers,
        timeout: timeout.unwrap_or(DEFAULT_BACKEND_TIMEOUT),
        prompt_caching: prompt_caching.unwrap_or(true),
    }
}

/// `name`: the admin API passes the name from the URL path, which overrides any `name` in the
/// body; the config file passes `None` and the `name` field is required.
pub(super) fn read_assistant(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
    name: Option<&str>,
) -> AssistantConfig {
    let mut a = AssistantConfig {
        name: name.unwrap_or_default().to_string(),
        backend: String::new(),
        // Empty = not given; `check_references` requires it unless the backend is a mock.
        model: String::new(),
        description: None,
        system_prompt: None,
        mcp_servers: Vec::new(),
        max_tool_iterations: DEFAULT_MAX_TOOL_ITERATIONS,
        max_tool_calls_per_turn: DEFAULT_MAX_TOOL_CALLS_PER_TURN,
        temperature: None,
        top_p: None,
        max_tokens: None,
        extra_body: Default::default(),
        allowed_tools: Vec::new(),
        denied_tools: Vec::new(),
        responses_mcp_items: true,
        vision: false,
    };
    let (mut name_given, mut backend_given) = (name.is_some(), false);

    let Some(fields) = fields(problems, path, v) else {
        return a;
    };
    for (key, val) in fields {
        let p = path.key(&key);
        match key.as_str() {
            "name" if name.is_some() => {}
            "name" => {
                name_given = given(val);
                a.name = non_empty(problems, &p, val).unwrap_or_default();
                if !a.name.is_empty() && !super::valid_name(&a.name) {
                    problems.add(&p, format!("invalid name: {}", super::NAME_RULE));
                }
            }
            "backend" => {
                backend_given = given(val);
                a.backend = non_empty(problems, &p, val).unwrap_or_default();
            }
            "model" => a.model = string(problems, &p, val).unwrap_or_default().trim().into(),
            "description" => a.description = blank_to_none(string(problems, &p, val)),
            "system_prompt" => a.system_prompt = blank_to_none(string(problems, &p, val)),
            "mcp_servers" => a.mcp_servers = server_list(problems, &p, val),
            "max_tool_iterations" => {
                let n = integer(problems, &p, val, 0, u32::MAX.into());
                a.max_tool_iterations = n
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(DEFAULT_MAX_TOOL_ITERATIONS);
            }
            "max_tool_calls_per_turn" => {
                a.max_tool_calls_per_turn = count(problems, &p, val, 1, MAX_TOOL_CALLS_LIMIT)
                    .unwrap_or(DEFAULT_MAX_TOOL_CALLS_PER_TURN);
            }
            "temperature" => a.temperature = number(problems, &p, val, 0.0, 2.0),
            "top_p" => a.top_p = number(problems, &p, val, 0.0, 1.0),
            "max_tokens" => a.max_tokens = integer(problems, &p, val, 1, u64::MAX),
            "extra_body" => a.extra_body = json_object(problems, &p, val),
            "allowed_tools" => a.allowed_tools = name_list(problems, &p, val),
            "denied_tools" => a.denied_tools = name_list(problems, &p, val),
            "responses_mcp_items" => {
                a.responses_mcp_items = boolean(problems, &p, val).unwrap_or(true);
            }
            "vision" => a.vision = boolean(problems, &p, val).unwrap_or(false),
            _ => problems.unknown(&p),
        }
    }
    if !name_given {
        problems.missing(&path.key("name"));
    }
    if !backend_given {
        problems.missing(&path.key("backend"));
    }
    a
}

/// MCP server names of an assistant; a name listed twice is a mistake worth reporting (its tools
/// would be offered twice). Invalid entries stay as "" so that the indices `check_references`
/// reports match the document.
fn server_list(problems: &mut Problems, path: &Path, v: &Yaml) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, item) in elements(problems, path, v).iter().enumerate() {
        let p = path.index(i);
        let name = non_empty(problems, &p, item).unwrap_or_default();
        if !name.is_empty() && names.contains(&name) {
            problems.add(&p, format!("MCP server '{name}' is listed twice"));
        }
        names.push(name);
    }
    names
}
