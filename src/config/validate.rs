//! From YAML text to a typed [`Config`]: parse, expand `${VAR}` in string values, read every
//! section strictly (collecting all problems as `path: message`), then check cross references.
//! Also the item-level entry points the admin API uses for PUT bodies, and
//! [`check_references`], which it runs on every candidate config. Pure functions apart from
//! warnings sent to the log (never values); no threads.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_yaml::Value as Yaml;

use super::env::expand_tree;
use super::items::{read_assistant, read_backend, read_mcp_server};
use super::numbers::{count, duration, duration_or_zero};
use super::raw::{
    Path, Problems, boolean, check_http_url, choice, elements, entries, is_header_name, non_empty,
    string, string_list,
};
use super::{
    AdminConfig, ApimanConfig, ApimanMode, AssistantConfig, BackendConfig, BackendKind, Config,
    EnvLookup, McpServerConfig, ServerConfig,
};
use crate::secret::Secret;

/// Upper bounds that keep thread counts and buffers bounded even when a config asks for more.
const MAX_WORKERS: u64 = 4096;
const MAX_BODY_BYTES: u64 = 1 << 30;

pub(super) fn parse_and_validate(text: &str, env: &dyn EnvLookup) -> Result<Config, Vec<String>> {
    let mut doc = parse_yaml(text)?;
    let mut problems = Problems::default();
    let root = Path::root("(top level)");
    expand(&mut problems, &root, &mut doc, env);
    let mut cfg = read_config(&mut problems, &root, &doc);
    problems.extend(check_references(&cfg));
    // A mock backend ignores the model, so assistants on one may leave it out.
    for a in &mut cfg.assistants {
        if a.model.is_empty() {
            a.model = "mock".into();
        }
    }
    let cfg = problems.into_result(cfg)?;
    for (name, b) in &cfg.backends {
        warn_without_key(name, b);
    }
    Ok(cfg)
}

fn parse_yaml(text: &str) -> Result<Yaml, Vec<String>> {
    // An empty file is an empty config (no assistants yet), as in the original.
    let mut doc: Yaml = if text.trim().is_empty() {
        Yaml::Null
    } else {
        serde_yaml::from_str(text).map_err(|e| vec![format!("yaml: {e}")])?
    };
    // `<<: *anchor` merge keys, so shared settings can be written once.
    doc.apply_merge().map_err(|e| vec![format!("yaml: {e}")])?;
    Ok(doc)
}

fn expand(problems: &mut Problems, root: &Path, doc: &mut Yaml, env: &dyn EnvLookup) {
    let mut warnings = Vec::new();
    expand_tree(problems, &mut warnings, root, doc, env);
    for w in warnings {
        log::warn!("config: {w}");
    }
}

fn warn_without_key(name: &str, b: &BackendConfig) {
    if b.api_key.is_none() && b.kind != BackendKind::Mock {
        log::warn!("config: backend '{name}' has no api_key; its requests carry no auth header");
    }
}

fn read_config(problems: &mut Problems, root: &Path, doc: &Yaml) -> Config {
    let mut cfg = Config {
        server: ServerConfig::default(),
        mcp_servers: Default::default(),
        backends: Default::default(),
        assistants: Vec::new(),
        proxy_api_keys: Vec::new(),
        apiman: ApimanConfig::default(),
        admin: AdminConfig::default(),
        responses: Default::default(),
        audit: None,
    };
    for (key, val) in entries(problems, root, doc) {
        let p = root.key(&key);
        match key.as_str() {
            "server" => cfg.server = read_server(problems, &p, val),
            "mcp_servers" => {
                for (name, v) in named(problems, &p, val) {
                    let server = read_mcp_server(problems, &p.key(&name), v);
                    cfg.mcp_servers.insert(name, server);
                }
            }
            "backends" => {
                for (name, v) in named(problems, &p, val) {
                    let backend = read_backend(problems, &p.key(&name), v);
                    cfg.backends.insert(name, backend);
                }
            }
            "assistants" => {
                // Every entry keeps its index, even a broken one, so that reference problems
                // point at the right `assistants[i]`.
                for (i, v) in elements(problems, &p, val).iter().enumerate() {
                    cfg.assistants
                        .push(read_assistant(problems, &p.index(i), v, None));
                }
            }
            "proxy_api_keys" => cfg.proxy_api_keys = super::ops::read_keys(problems, &p, val),
            "audit" => cfg.audit = super::ops::read_audit(problems, &p, val),
            "apiman" => cfg.apiman = read_apiman(problems, &p, val),
            "admin" => cfg.admin = read_admin(problems, &p, val),
            "responses" => cfg.responses = super::responses::read_responses(problems, &p, val),
            _ => problems.unknown(&p),
        }
    }
    cfg
}

/// The entries of a `name: item` section; names must not be empty.
fn named<'a>(problems: &mut Problems, path: &Path, v: &'a Yaml) -> Vec<(String, &'a Yaml)> {
    let items = entries(problems, path, v);
    for (name, _) in &items {
        if name.trim().is_empty() {
            problems.add(&path.key(name), "name must not be empty");
        } else if !super::valid_name(name) {
            problems.add(
                &path.key(name),
                format!("invalid name: {}", super::NAME_RULE),
            );
        }
    }
    items
}

fn read_server(problems: &mut Problems, path: &Path, v: &Yaml) -> ServerConfig {
    let mut s = ServerConfig::default();
    for (key, val) in entries(problems, path, v) {
        let p = path.key(&key);
        match key.as_str() {
            "listen" => {
                // `${AIPROXY_LISTEN:-}` expanding to "" means "not set here".
                let listen = string(problems, &p, val).filter(|l| !l.trim().is_empty());
                s.listen = listen.filter(|l| check_listen(problems, &p, l));
            }
            "workers" => set(&mut s.workers, count(problems, &p, val, 1, MAX_WORKERS)),
            "max_in_flight" => set(&mut s.max_in_flight, count(problems, &p, val, 1, u64::MAX)),
            "max_connections" => {
                set(
                    &mut s.max_connections,
                    count(problems, &p, val, 1, u64::MAX),
                );
            }
            "max_body_bytes" => {
                set(
                    &mut s.max_body_bytes,
                    count(problems, &p, val, 1, MAX_BODY_BYTES),
                );
            }
            "request_timeout" => set(&mut s.request_timeout, duration(problems, &p, val)),
            "idle_timeout" => set(&mut s.idle_timeout, duration(problems, &p, val)),
            "max_connections_per_ip" => {
                if let Some(n) = count(problems, &p, val, 0, u64::MAX) {
                    s.max_connections_per_ip = Some(n);
                }
            }
            "first_byte_timeout" => {
                set(&mut s.first_byte_timeout, duration(problems, &p, val));
            }
            "drain_timeout" => set(&mut s.drain_timeout, duration_or_zero(problems, &p, val)),
            "cors" => s.cors_allowed_origins = read_cors(problems, &p, val),
            "watch_config" => set(&mut s.watch_config, boolean(problems, &p, val)),
            _ => problems.unknown(&p),
        }
    }
    s
}

/// `server.cors`: `allowed_origins` (exact origins, `*` for any; a trailing `/` is ignored).
fn read_cors(problems: &mut Problems, path: &Path, v: &Yaml) -> Vec<String> {
    let mut origins = Vec::new();
    for (key, val) in entries(problems, path, v) {
        let p = path.key(&key);
        match key.as_str() {
            "allowed_origins" => {
                origins = string_list(problems, &p, val)
                    .into_iter()
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect();
            }
            _ => problems.unknown(&p),
        }
    }
    origins
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// `listen` is a socket address (`127.0.0.1:8000`, `[::1]:8000`) or `host:port`
/// (`localhost:8000`); the name is resolved when binding.
fn check_listen(problems: &mut Problems, path: &Path, s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let ok = match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && port.parse::<u16>().is_ok()
        }
        None => false,
    };
    if !ok {
        problems.add(path, "expected host:port, e.g. 127.0.0.1:8000");
    }
    ok
}

const APIMAN_MODES: &[(&str, ApimanMode)] = &[
    ("gateway_probe", ApimanMode::GatewayProbe),
    ("trusted_header", ApimanMode::TrustedHeader),
];

fn read_apiman(problems: &mut Problems, path: &Path, v: &Yaml) -> ApimanConfig {
    let mut a = ApimanConfig::default();
    let mut mode_ok = true;
    for (key, val) in entries(problems, path, v) {
        let p = path.key(&key);
        let s =
            |problems: &mut Problems| string(problems, &p, val).filter(|s| !s.trim().is_empty());
        match key.as_str() {
            "enabled" => set(&mut a.enabled, boolean(problems, &p, val)),
            "mode" => match choice(problems, &p, val, APIMAN_MODES) {
                Some(mode) => a.mode = mode,
                None => mode_ok = val.is_null(),
            },
            // Stored ready to join as `{gateway_url}/{probe_api}/{probe_path}`.
            "gateway_url" => {
                a.gateway_url = s(problems).map(|u| u.trim().trim_end_matches('/').to_string());
            }
            "probe_api" => a.probe_api = s(problems).map(|p| p.trim().trim_matches('/').into()),
            "probe_path" => {
                let path = string(problems, &p, val);
                set(
                    &mut a.probe_path,
                    path.map(|p| p.trim().trim_start_matches('/').into()),
                );
            }
            "api_key_header" => set(&mut a.api_key_header, non_empty(problems, &p, val)),
            "cache_ttl" => set(&mut a.cache_ttl, duration_or_zero(problems, &p, val)),
            "timeout" => set(&mut a.timeout, duration(problems, &p, val)),
            "header" => a.header = s(problems).map(|h| h.trim().to_string()),
            "secret" => a.secret = s(problems).map(Secret::new),
            _ => problems.unknown(&p),
        }
    }
    // Fields of the unused mode may be present (the example config carries both); the
    // requirements apply only when Apiman is on.
    if a.enabled && mode_ok {
        check_apiman(problems, path, &a);
    }
    a
}

fn check_apiman(problems: &mut Problems, path: &Path, a: &ApimanConfig) {
    match a.mode {
        ApimanMode::GatewayProbe => {
            let needs = "required when apiman.mode is gateway_probe";
            match &a.gateway_url {
                Some(url) => {
                    check_http_url(problems, &path.key("gateway_url"), url);
                }
                None => problems.add(&path.key("gateway_url"), needs),
            }
            match &a.probe_api {
                // Checked after stripping slashes (done when read), as the probe URL is built
                // (the original counted slashes before stripping and rejected `/org/api/1.0/`).
                Some(api) => {
                    let segments: Vec<&str> = api.split('/').collect();
                    if segments.len() != 3 || segments.iter().any(|s| s.trim().is_empty()) {
                        problems.add(&path.key("probe_api"), "expected {org}/{api}/{version}");
                    }
                }
                None => problems.add(&path.key("probe_api"), needs),
            }
            if !is_header_name(&a.api_key_header) {
                problems.add(&path.key("api_key_header"), "not a valid HTTP header name");
            }
        }
        ApimanMode::TrustedHeader => {
            let needs = "required when apiman.mode is trusted_header";
            match &a.header {
                Some(h) if !is_header_name(h) => {
                    problems.add(&path.key("header"), "not a valid HTTP header name");
                }
                Some(_) => {}
                None => problems.add(&path.key("header"), needs),
            }
            if a.secret.is_none() {
                problems.add(&path.key("secret"), needs);
            }
        }
    }
}

fn read_admin(problems: &mut Problems, path: &Path, v: &Yaml) -> AdminConfig {
    let mut a = AdminConfig::default();
    for (key, val) in entries(problems, path, v) {
        let p = path.key(&key);
        match key.as_str() {
            "persist" => set(&mut a.persist, boolean(problems, &p, val)),
            "read_only" => set(&mut a.read_only, boolean(problems, &p, val)),
            "listen" => {
                // `${AIPROXY_ADMIN_LISTEN:-}` expanding to "" means "not set here".
                let listen = string(problems, &p, val)
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty());
                a.listen = listen.filter(|l| l == "off" || check_listen(problems, &p, l));
            }
            _ => problems.unknown(&p),
        }
    }
    a
}

/// Cross-reference problems of a whole config, as `path: message`: duplicate assistant names,
/// assistants naming a backend or MCP server that does not exist, and a missing `model` on an
/// assistant whose backend is not a mock. The admin API runs it on every candidate config (an
/// upsert, or a delete that would leave an assistant dangling).
pub fn check_references(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, a) in cfg.assistants.iter().enumerate() {
        let at = format!("assistants[{i}]");
        // Empty values were already reported by the reader.
        if !a.name.is_empty() {
            match first_index.get(a.name.as_str()) {
                Some(first) => out.push(format!(
                    "{at}.name: duplicate assistant name '{}' (also assistants[{first}])",
                    a.name
                )),
                None => {
                    first_index.insert(&a.name, i);
                }
            }
        }
        if !a.backend.is_empty() {
            match cfg.backends.get(&a.backend) {
                None => out.push(format!("{at}.backend: unknown backend '{}'", a.backend)),
                Some(b) if b.kind != BackendKind::Mock && a.model.is_empty() => out.push(format!(
                    "{at}.model: missing required field (backend '{}' is not a mock)",
                    a.backend
                )),
                Some(_) => {}
            }
        }
        for (j, server) in a.mcp_servers.iter().enumerate() {
            if !server.is_empty() && !cfg.mcp_servers.contains_key(server) {
                out.push(format!(
                    "{at}.mcp_servers[{j}]: unknown MCP server '{server}'"
                ));
            }
        }
    }
    out
}

/// Validate one MCP server definition (an admin PUT body; `${VAR}` expanded from `env`).
/// Problem paths are relative to the body, e.g. `url: missing required field (transport http)`.
pub fn mcp_server_from_value(
    name: &str,
    v: &serde_json::Value,
    env: &dyn EnvLookup,
) -> Result<McpServerConfig, Vec<String>> {
    item(name, v, env, read_mcp_server)
}

/// Validate one backend definition (an admin PUT body; `${VAR}` expanded from `env`).
pub fn backend_from_value(
    name: &str,
    v: &serde_json::Value,
    env: &dyn EnvLookup,
) -> Result<BackendConfig, Vec<String>> {
    let b = item(name, v, env, read_backend)?;
    warn_without_key(name, &b);
    Ok(b)
}

/// Validate one assistant definition (an admin PUT body; `${VAR}` expanded from `env`). `name`
/// (from the URL path) overrides any `name` in the body. References to backends and MCP
/// servers are not checked here: run [`check_references`] on the resulting config. A missing
/// `model` stays empty (allowed for mock backends; `check_references` reports it otherwise).
pub fn assistant_from_value(
    name: &str,
    v: &serde_json::Value,
    env: &dyn EnvLookup,
) -> Result<AssistantConfig, Vec<String>> {
    item(name, v, env, |problems, path, v| {
        read_assistant(problems, path, v, Some(name))
    })
}

fn item<T>(
    name: &str,
    v: &serde_json::Value,
    env: &dyn EnvLookup,
    read: impl FnOnce(&mut Problems, &Path, &Yaml) -> T,
) -> Result<T, Vec<String>> {
    let mut problems = Problems::default();
    if name.trim().is_empty() {
        problems.add(&Path::root("name"), "must not be empty");
    } else if !super::valid_name(name) {
        problems.add(&Path::root("name"), super::NAME_RULE);
    }
    let root = Path::root("(body)");
    // JSON is a subset of the YAML data model, so this conversion cannot fail in practice.
    let mut doc = serde_yaml::to_value(v).map_err(|e| vec![format!("(body): {e}")])?;
    expand(&mut problems, &root, &mut doc, env);
    let out = read(&mut problems, &root, &doc);
    problems.into_result(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    const EXAMPLE: &str = include_str!("../../config.example.yaml");
    const ORIGINAL: &str = include_str!("../../tests/fixtures/config/original-example.yaml");

    #[test]
    fn example_configs_load() {
        let env = MapEnv::new().with("AIPROXY_EXE", "/bin/aiproxy");
        let cfg = parse_and_validate(EXAMPLE, &env).unwrap();
        assert_eq!(cfg.assistants.len(), 3);
        assert_eq!(cfg.backends.len(), 5);
        assert_eq!(
            cfg.backends["openai-responses"].kind,
            BackendKind::OpenAiResponses
        );
        let cfg = parse_and_validate(ORIGINAL, &MapEnv::new()).unwrap();
        assert_eq!(cfg.assistants.len(), 2);
        assert_eq!(cfg.server, ServerConfig::default());
    }

    #[test]
    fn openai_responses_kind_needs_a_base_url_and_takes_no_prompt_caching() {
        let env = MapEnv::new();
        let yaml = "backends:\n  r:\n    kind: openai-responses\n    base_url: https://api.openai.com/v1/\n    api_key: k\n";
        let cfg = parse_and_validate(yaml, &env).unwrap();
        assert_eq!(cfg.backends["r"].kind, BackendKind::OpenAiResponses);
        assert_eq!(cfg.backends["r"].base_url, "https://api.openai.com/v1");
        let errors = |yaml: &str| format!("{:?}", parse_and_validate(yaml, &env).unwrap_err());
        let e = errors("backends:\n  r:\n    kind: openai-responses\n    api_key: k\n");
        assert!(e.contains("backends.r.base_url"), "{e}");
        let e = errors(
            "backends:\n  r:\n    kind: openai-responses\n    base_url: http://x/v1\n    prompt_caching: true\n",
        );
        assert!(e.contains("only valid for kind anthropic"), "{e}");
    }

    #[test]
    fn listen_forms() {
        for ok in [
            "127.0.0.1:8000",
            "0.0.0.0:0",
            "[::1]:8000",
            "localhost:8000",
            "my-host.lan:80",
        ] {
            let cfg = parse_and_validate(&format!("server: {{listen: '{ok}'}}"), &MapEnv::new())
                .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
            assert_eq!(cfg.server.listen.as_deref(), Some(ok));
        }
        for bad in [
            "8000",
            "localhost",
            "host:99999",
            ":8000",
            "::1:8000",
            "a b:80",
        ] {
            let err = parse_and_validate(&format!("server: {{listen: '{bad}'}}"), &MapEnv::new())
                .unwrap_err();
            assert_eq!(
                err,
                ["server.listen: expected host:port, e.g. 127.0.0.1:8000"],
                "{bad}"
            );
        }
        let env = MapEnv::new();
        let cfg = parse_and_validate("server: {listen: '${AIPROXY_LISTEN:-}'}", &env).unwrap();
        assert_eq!(cfg.server.listen, None);
    }

    #[test]
    fn proxy_keys_drop_blank_entries() {
        let env = MapEnv::new().with("K", "pk-1").with("BLANK", "  ");
        let cfg = parse_and_validate(
            "proxy_api_keys: ['${K}', '', '${BLANK}', '${UNSET:-}', 12345]",
            &env,
        )
        .unwrap();
        let keys: Vec<&str> = cfg.proxy_api_keys.iter().map(|k| k.key.expose()).collect();
        assert_eq!(keys, ["pk-1", "12345"]);
    }

    #[test]
    fn mock_assistants_may_omit_the_model() {
        let cfg = parse_and_validate(
            "backends: {m: {kind: mock}}\nassistants: [{name: a, backend: m}]",
            &MapEnv::new(),
        )
        .unwrap();
        assert_eq!(cfg.assistants[0].model, "mock");
        assert_eq!(cfg.backends["m"].base_url, "");
    }
}
