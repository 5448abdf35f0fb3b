//! Configuration: `config.yaml` → typed [`Config`].
//!
//! The pipeline is parse (YAML into a generic tree; `<<` merge keys applied) → expand `${VAR}` /
//! `${VAR:-default}` / `$$` in string values (`env`; variables come from [`Env`]: the process
//! environment, a `.env` file, built-ins) → read the tree strictly into the typed values below
//! (`raw`: a small schema reader; `items`: MCP servers, backends, assistants; `validate`: the
//! sections, durations, addresses, enums, cross references), collecting every problem as
//! `path: message` (`assistants[1].temprature: unknown field`) so an operator sees them all at
//! once. The admin API
//! reuses the item readers ([`assistant_from_value`] …) and [`check_references`]. Nothing here
//! does I/O besides reading the files the caller names; no threads.

mod dotenv;
mod env;
mod items;
mod numbers;
mod ops;
mod raw;
mod responses;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::secret::Secret;

pub use env::{Env, EnvLookup, MapEnv, expand_str};
pub use responses::ResponsesConfig;
pub use validate::{
    assistant_from_value, backend_from_value, check_references, mcp_server_from_value,
};

/// The whole, validated configuration. Immutable once built; live changes build a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub mcp_servers: BTreeMap<String, McpServerConfig>,
    pub backends: BTreeMap<String, BackendConfig>,
    pub assistants: Vec<AssistantConfig>,
    /// Non-empty keys only: `${PROXY_API_KEY:-}` expanding to "" does not switch auth on.
    pub proxy_api_keys: Vec<ProxyKey>,
    pub apiman: ApimanConfig,
    pub admin: AdminConfig,
    /// `responses:` — the response store's limits.
    pub responses: ResponsesConfig,
    /// The tool audit log (`audit:`); `None` = off.
    pub audit: Option<AuditConfig>,
}

/// One `proxy_api_keys` entry. A plain string is a key named `key-<n>` (its 1-based position)
/// with no scope and no limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyKey {
    /// Shown in metrics, logs and the audit log (never the key).
    pub name: String,
    pub key: Secret,
    /// Assistant-name globs this key may use; `None` = every assistant.
    pub assistants: Option<Vec<String>>,
    /// Requests per minute (a token bucket per key per replica); `None` = unlimited.
    pub rpm: Option<u64>,
    /// Upstream tokens per minute, charged from reported usage; `None` = unlimited.
    pub tpm: Option<u64>,
}

impl ProxyKey {
    /// The entry for a plain-string key at position `index` (0-based).
    pub fn plain(index: usize, key: impl Into<String>) -> ProxyKey {
        ProxyKey {
            name: format!("key-{}", index + 1),
            key: Secret::new(key.into()),
            assistants: None,
            rpm: None,
            tpm: None,
        }
    }
}

/// `audit:` — a JSON-lines file of every tool call, rotated by size.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// Rotate when the file would grow past this (default 100 MiB; at least 4096).
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.keep`; default 5; 0 = truncate in place).
    pub keep: usize,
    /// Log the arguments themselves instead of their size and hash.
    pub include_arguments: bool,
}

impl AuditConfig {
    pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
    pub const DEFAULT_KEEP: usize = 5;
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `host:port`; `None` means "not set in the file" (the CLI then applies its default).
    pub listen: Option<String>,
    /// Worker threads that run requests (each runs one agent loop, a whole stream, at a time).
    /// Sized for long LLM streams: a thread with its small stack costs tens of KiB resident.
    pub workers: usize,
    /// Requests admitted at once (running + queued); beyond it: 503 + `Retry-After`, and
    /// `GET /ready` answers 503 while it is reached.
    pub max_in_flight: usize,
    /// Open client connections; beyond it: 503 and close.
    pub max_connections: usize,
    /// Largest request body; beyond it: 413 and the connection is closed.
    pub max_body_bytes: usize,
    /// Whole-request budget for one chat completion (all rounds and tool calls).
    pub request_timeout: Duration,
    /// Keep-alive connections idle longer than this are closed.
    pub idle_timeout: Duration,
    /// Open connections from one client address (IPv6: one /64); beyond it: 503 and close.
    /// 0 = no per-address cap; `None` (not set) = half of `max_connections`
    /// ([`ServerConfig::connections_per_ip`]), so a reverse proxy on the same host (every
    /// client one address) gets most of the capacity while one client still cannot take all.
    pub max_connections_per_ip: Option<usize>,
    /// A new connection that sends nothing for this long is closed.
    pub first_byte_timeout: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// Browser origins (`https://app.example`, or `*`) allowed to call `/v1/*`. With no auth
    /// provider configured, a request carrying any other `Origin` is refused (403), so a web
    /// page cannot use an open gateway from a visitor's browser. Empty (default): none.
    pub cors_allowed_origins: Vec<String>,
    /// Poll the config file (through symlinks: inode, mtime, size) and reload on change.
    pub watch_config: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: None,
            workers: 1024,
            max_in_flight: 2048,
            max_connections: 4096,
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: None,
            first_byte_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            cors_allowed_origins: Vec::new(),
            watch_config: false,
        }
    }
}

impl ServerConfig {
    /// The per-address connection cap in effect (0 = none): the configured one, else half of
    /// `max_connections` (at least 1).
    pub fn connections_per_ip(&self) -> usize {
        self.max_connections_per_ip
            .unwrap_or((self.max_connections / 2).max(1))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct McpServerConfig {
    pub transport: McpTransport,
    pub description: Option<String>,
    /// Spawn/connect + `initialize` + first `tools/list`.
    pub startup_timeout: Duration,
    /// One `tools/call`; on expiry the call is cancelled and the model sees a tool error.
    pub call_timeout: Duration,
    /// Concurrent calls to this server across all requests.
    pub max_concurrency: usize,
    /// Tools offered from this server (the first ones of its listing); default 1000.
    pub max_tools: usize,
    /// HTTP transports: a PEM file of CA certificates to trust for this server's HTTPS instead
    /// of the bundled roots (a private CA). `None`: the bundled Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum McpTransport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, Secret>,
        cwd: Option<PathBuf>,
        /// Pass the proxy's whole environment to the child (off: a minimal safe set only).
        inherit_env: bool,
    },
    /// Legacy HTTP+SSE (2024-11-05).
    Sse {
        url: String,
        headers: BTreeMap<String, Secret>,
    },
    /// Streamable HTTP (`http` and `streamable-http` in the file).
    StreamableHttp {
        url: String,
        headers: BTreeMap<String, Secret>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    OpenAi,
    /// The Responses API (`POST {base_url}/responses`).
    OpenAiResponses,
    Anthropic,
    Mock,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// Without a trailing slash; empty for `mock`.
    pub base_url: String,
    /// `None` when unset or empty (then no auth header is sent; a warning is logged at load).
    pub api_key: Option<Secret>,
    pub default_headers: BTreeMap<String, Secret>,
    /// Connect + wait for the response head, and the longest silence while reading a body.
    pub timeout: Duration,
    /// Anthropic only: `cache_control` on the fixed prefix (tools + system prompt).
    pub prompt_caching: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssistantConfig {
    pub name: String,
    pub backend: String,
    /// The upstream model id. Optional for mock backends: a loaded config fills in "mock";
    /// [`assistant_from_value`] leaves it empty (and [`check_references`] rejects an empty
    /// model on a non-mock backend).
    pub model: String,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub mcp_servers: Vec<String>,
    pub max_tool_iterations: u32,
    /// MCP tool calls executed in one turn (default 128); calls beyond get a tool error.
    pub max_tool_calls_per_turn: usize,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    /// Merged last into the upstream payload.
    pub extra_body: Map<String, Value>,
    /// Exposed tool names (`server__tool`), `*` globs. Empty = all.
    pub allowed_tools: Vec<String>,
    pub denied_tools: Vec<String>,
    /// Responses API: show each MCP tool call as an `mcp_call` output item (default true).
    pub responses_mcp_items: bool,
    /// The model takes images: images from MCP tools are sent as `image_url` parts of a user
    /// message after the tool results (default false: a text placeholder only).
    pub vision: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApimanMode {
    #[default]
    GatewayProbe,
    TrustedHeader,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApimanConfig {
    pub enabled: bool,
    pub mode: ApimanMode,
    /// Without a trailing slash.
    pub gateway_url: Option<String>,
    /// `{org}/{api}/{version}`, without leading or trailing slashes.
    pub probe_api: Option<String>,
    /// Without a leading slash; may be empty.
    pub probe_path: String,
    pub api_key_header: String,
    pub cache_ttl: Duration,
    pub timeout: Duration,
    pub header: Option<String>,
    pub secret: Option<Secret>,
}

impl Default for ApimanConfig {
    fn default() -> Self {
        ApimanConfig {
            enabled: false,
            mode: ApimanMode::GatewayProbe,
            gateway_url: None,
            probe_api: None,
            probe_path: String::new(),
            api_key_header: "X-API-Key".into(),
            cache_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            header: None,
            secret: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminConfig {
    /// Write admin changes back to the config file.
    pub persist: bool,
    /// The admin listener (admin API, `/metrics`, `/health`) as written: `None` = not set in
    /// the file (the CLI applies [`DEFAULT_ADMIN_LISTEN`]); `Some("off")` disables it.
    pub listen: Option<String>,
    /// Refuse every admin write with 405 (replicas managed from a ConfigMap); reads stay.
    pub read_only: bool,
}

/// Where the admin listener binds unless `admin.listen`, `AIPROXY_ADMIN_LISTEN` or
/// `--admin-listen` say otherwise.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8001";

/// Names of MCP servers, backends and assistants: `[A-Za-z0-9_.-]{1,64}`, not `.` or `..`.
/// They appear in admin URL paths, tool names and metrics labels.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The message for a name that [`valid_name`] refuses.
pub const NAME_RULE: &str =
    "names are 1 to 64 characters of A-Z a-z 0-9 _ . - (and not '.' or '..')";

impl Config {
    pub fn assistant(&self, name: &str) -> Option<&AssistantConfig> {
        self.assistants.iter().find(|a| a.name == name)
    }
}

/// Every problem found in a config, each as `path: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub source: String,
    pub problems: Vec<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}:", self.source)?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Load and validate a config file. Environment variables are read from `env`.
pub fn load_file(path: &Path, env: &dyn EnvLookup) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error {
        source: path.display().to_string(),
        problems: vec![format!("cannot read file: {e}")],
    })?;
    parse(&text, &path.display().to_string(), env)
}

/// Parse and validate YAML text; `source` names it in errors.
pub fn parse(text: &str, source: &str, env: &dyn EnvLookup) -> Result<Config, Error> {
    validate::parse_and_validate(text, env).map_err(|problems| Error {
        source: source.to_string(),
        problems,
    })
}
