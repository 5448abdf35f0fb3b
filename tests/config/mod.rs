//! Config loading through the public API: golden fixtures (a config in, the exact problem list
//! out), the example configs, env expansion end to end, and the item validators the admin API
//! uses.
//!
//! Golden files: `tests/fixtures/config/invalid/<case>.yaml` must fail with exactly the lines of
//! `<case>.errors`. After an intended change to messages, regenerate them with
//! `AIPROXY_BLESS=1 cargo test config::` and review the diff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aiproxy::config::{
    self, ApimanMode, BackendKind, Config, Env, MapEnv, McpTransport, assistant_from_value,
    backend_from_value, check_references, mcp_server_from_value,
};
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The environment every fixture sees (only `ANTHROPIC_API_KEY` and `EMPTY` are set).
fn fixture_env() -> MapEnv {
    MapEnv::new()
        .with("ANTHROPIC_API_KEY", "sk-ant-test")
        .with("EMPTY", "")
        .with("AIPROXY_EXE", "/usr/local/bin/aiproxy")
}

fn load(path: &Path, env: &MapEnv) -> Result<Config, config::Error> {
    config::load_file(path, env)
}

#[test]
fn golden_error_fixtures() {
    let dir = fixtures().join("invalid");
    let bless = std::env::var_os("AIPROXY_BLESS").is_some();
    // Blessing makes every case pass: never in CI.
    assert!(
        !bless || std::env::var_os("CI").is_none(),
        "AIPROXY_BLESS is refused when CI is set"
    );
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "fixtures missing in {}", dir.display());
    let mut failures = Vec::new();
    for case in cases {
        let err = match load(&case, &fixture_env()) {
            Ok(cfg) => panic!("{} loaded but must fail: {cfg:?}", case.display()),
            Err(e) => e,
        };
        assert_eq!(err.source, case.display().to_string());
        let got = err.problems.join("\n") + "\n";
        let golden = case.with_extension("errors");
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        if got != want {
            failures.push(format!(
                "{}:\n--- want\n{want}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_display_lists_every_problem() {
    let err = config::parse(
        "assistants:\n  - name: a\n    temprature: 1\n",
        "test.yaml",
        &MapEnv::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config test.yaml:\n  - assistants[0].temprature: unknown field\n  \
         - assistants[0].backend: missing required field"
    );
}

#[test]
fn original_project_example_loads_unchanged() {
    let cfg = load(&fixtures().join("original-example.yaml"), &fixture_env()).unwrap();
    assert_eq!(
        cfg.mcp_servers.keys().collect::<Vec<_>>(),
        ["echo", "fetch", "filesystem"]
    );
    match &cfg.mcp_servers["filesystem"].transport {
        McpTransport::Stdio {
            command,
            args,
            inherit_env,
            ..
        } => {
            assert_eq!(command, "npx");
            assert_eq!(
                args,
                &["-y", "@modelcontextprotocol/server-filesystem", "/data"]
            );
            assert!(!inherit_env);
        }
        other => panic!("{other:?}"),
    }
    let fs = &cfg.mcp_servers["filesystem"];
    assert_eq!(
        (fs.startup_timeout, fs.call_timeout, fs.max_concurrency),
        (Duration::from_secs(30), Duration::from_secs(60), 16)
    );
    // OPENAI_API_KEY is unset: no key (a warning), not an error.
    assert_eq!(cfg.backends["openai"].api_key, None);
    assert_eq!(
        cfg.backends["anthropic"].api_key.as_ref().unwrap().expose(),
        "sk-ant-test"
    );
    assert_eq!(cfg.backends["anthropic"].kind, BackendKind::Anthropic);
    assert!(cfg.backends["anthropic"].prompt_caching);
    let local = &cfg.backends["local"];
    assert_eq!(local.base_url, "http://host.docker.internal:11434/v1");
    assert_eq!(local.api_key.as_ref().unwrap().expose(), "not-needed");
    assert_eq!(local.timeout, Duration::from_secs(300));

    let research = cfg.assistant("research-assistant").unwrap();
    assert_eq!(research.model, "claude-sonnet-5");
    assert_eq!(research.temperature, Some(0.2));
    assert_eq!(research.max_tool_iterations, 8);
    assert!(
        research
            .system_prompt
            .as_ref()
            .unwrap()
            .starts_with("You are a meticulous")
    );
    let calc = cfg.assistant("calculator").unwrap();
    assert_eq!(
        (calc.max_tool_iterations, calc.mcp_servers.as_slice()),
        (4, &["echo".to_string()][..])
    );

    // `${PROXY_API_KEY:-}` with the variable unset does not switch auth on.
    assert!(cfg.proxy_api_keys.is_empty());
    assert!(!cfg.apiman.enabled);
    assert_eq!(cfg.apiman.cache_ttl, Duration::from_secs(60));
    assert_eq!(
        cfg.apiman.probe_api.as_deref(),
        Some("aiproxy/authcheck/1.0")
    );
    assert_eq!(cfg.apiman.secret, None);

    // With the key set, it is used.
    let env = fixture_env().with("PROXY_API_KEY", "pk-1");
    let cfg = load(&fixtures().join("original-example.yaml"), &env).unwrap();
    assert_eq!(cfg.proxy_api_keys.len(), 1);
    assert_eq!(cfg.proxy_api_keys[0].key.expose(), "pk-1");
}

#[test]
fn example_config_loads_and_documents_its_variables() {
    let cfg = load(&repo_file("config.example.yaml"), &fixture_env()).unwrap();
    let names: Vec<&str> = cfg.assistants.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["research-assistant", "calculator", "demo"]);
    assert_eq!(cfg.assistant("demo").unwrap().model, "mock");
    assert_eq!(
        cfg.server,
        config::ServerConfig {
            listen: Some("127.0.0.1:8000".into()),
            ..Default::default()
        }
    );
    assert_eq!(cfg.backends["local"].base_url, "http://127.0.0.1:11434/v1");
    assert_eq!(
        cfg.backends["openai-responses"].kind,
        config::BackendKind::OpenAiResponses
    );
    assert_eq!(cfg.backends["local"].timeout, Duration::from_secs(900));
    match &cfg.mcp_servers["demo"].transport {
        McpTransport::Stdio { command, args, .. } => {
            assert_eq!(
                (command.as_str(), args.as_slice()),
                ("/usr/local/bin/aiproxy", &["demo-mcp".to_string()][..])
            );
        }
        other => panic!("{other:?}"),
    }
    match &cfg.mcp_servers["filesystem"].transport {
        McpTransport::Stdio { args, env, .. } => {
            assert_eq!(args[2], "./data");
            assert_eq!(env["NODE_NO_WARNINGS"].expose(), "1");
        }
        other => panic!("{other:?}"),
    }
    assert!(check_references(&cfg).is_empty());

    // Every ${VAR} the example uses is documented in .env.example.
    let yaml = std::fs::read_to_string(repo_file("config.example.yaml")).unwrap();
    let dotenv = std::fs::read_to_string(repo_file(".env.example")).unwrap();
    let mut rest = yaml.as_str();
    let mut seen = 0;
    while let Some(i) = rest.find("${") {
        let name: String = rest[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + 2..];
        if name == "VAR" || name == "TTL" {
            continue; // the syntax explained in the header comment
        }
        seen += 1;
        assert!(
            dotenv.contains(&format!("{name}=")),
            "{name} is not in .env.example"
        );
    }
    assert!(seen >= 8, "only {seen} variables found");
}

#[test]
fn dotenv_example_parses_and_feeds_the_example_config() {
    let env = Env::load(Some(&repo_file(".env.example")))
        .unwrap()
        .with_builtin("AIPROXY_EXE", "/usr/local/bin/aiproxy");
    let cfg = config::load_file(&repo_file("config.example.yaml"), &env).unwrap();
    // The process environment may hold a real key; only check it was picked from some layer.
    assert!(cfg.backends["openai"].api_key.is_some());
}

#[test]
fn demo_config_through_env() {
    let env = Env::load(None)
        .unwrap()
        .with_builtin("AIPROXY_EXE", "/bin/aiproxy-demo");
    let cfg = aiproxy::demo::config(&env).unwrap();
    assert_eq!(cfg.assistants.len(), 1);
    assert!(check_references(&cfg).is_empty());
}

#[test]
fn numbers_and_booleans_from_env_strings() {
    let env = MapEnv::new()
        .with("WORKERS", "8")
        .with("TTL", "90")
        .with("TEMP", "0.7")
        .with("ON", "true")
        .with("TIMEOUT", "2m")
        .with("EMPTY", "");
    let yaml = "
server:
  workers: ${WORKERS}
  request_timeout: ${TIMEOUT}
  idle_timeout: ${EMPTY:-15}
  drain_timeout: '${UNSET_DRAIN:-500ms}'
backends:
  m: {kind: mock, timeout: '${UNSET:-1.5}'}
assistants:
  - name: a
    backend: m
    temperature: ${TEMP}
    max_tokens: ${MAX_TOKENS:-256}
    max_tool_iterations: ${ITER:-0}
apiman:
  enabled: ${ON}
  mode: ${MODE:-trusted_header}
  header: X-Gw
  secret: s3cret
  cache_ttl: ${TTL}
admin:
  persist: ${PERSIST:-false}
";
    let cfg = config::parse(yaml, "t", &env).unwrap();
    assert_eq!(cfg.server.workers, 8);
    assert_eq!(cfg.server.request_timeout, Duration::from_secs(120));
    assert_eq!(cfg.server.idle_timeout, Duration::from_secs(15));
    assert_eq!(cfg.server.drain_timeout, Duration::from_millis(500));
    assert_eq!(cfg.backends["m"].timeout, Duration::from_millis(1500));
    let a = &cfg.assistants[0];
    assert_eq!(
        (a.temperature, a.max_tokens, a.max_tool_iterations),
        (Some(0.7), Some(256), 0)
    );
    assert!(cfg.apiman.enabled);
    assert_eq!(cfg.apiman.mode, ApimanMode::TrustedHeader);
    assert_eq!(cfg.apiman.cache_ttl, Duration::from_secs(90));
    assert_eq!(cfg.apiman.secret.as_ref().unwrap().expose(), "s3cret");
    assert!(!cfg.admin.persist);
}

#[test]
fn keys_are_never_expanded_and_dollars_escape() {
    let env = MapEnv::new().with("NAME", "expanded").with("TOKEN", "t0k");
    let yaml = "
mcp_servers:
  srv:
    command: tool
    args: ['$$HOME', 'price: 5$', '${NAME}']
    env:
      ${NAME}: '${TOKEN}'
backends:
  m: {kind: mock}
";
    let cfg = config::parse(yaml, "t", &env).unwrap();
    let server = &cfg.mcp_servers["srv"];
    match &server.transport {
        McpTransport::Stdio { args, env, .. } => {
            assert_eq!(args, &["$HOME", "price: 5$", "expanded"]);
            assert_eq!(env["${NAME}"].expose(), "t0k");
        }
        other => panic!("{other:?}"),
    }
    // A key that names an item is not expanded either; `${NAME}` is then not a valid name.
    let e = config::parse(&yaml.replace("  srv:", "  ${NAME}:"), "t", &env).unwrap_err();
    assert!(
        e.to_string()
            .contains("mcp_servers.\"${NAME}\": invalid name"),
        "{e}"
    );
}

#[test]
fn apiman_probe_api_is_checked_after_stripping_slashes() {
    let base = "apiman:\n  enabled: true\n  gateway_url: http://gw:8080/apiman-gateway/\n";
    for ok in ["aiproxy/authcheck/1.0", "/aiproxy/authcheck/1.0/", "/o/a/v"] {
        let cfg = config::parse(&format!("{base}  probe_api: {ok}\n"), "t", &MapEnv::new())
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(cfg.apiman.mode, ApimanMode::GatewayProbe);
        assert_eq!(cfg.apiman.probe_api.as_deref(), Some(ok.trim_matches('/')));
        assert_eq!(
            cfg.apiman.gateway_url.as_deref(),
            Some("http://gw:8080/apiman-gateway")
        );
    }
    for bad in ["aiproxy/authcheck", "a//v", "a/b/c/d", "//a/b"] {
        let err = config::parse(
            &format!("{base}  probe_api: '{bad}'\n"),
            "t",
            &MapEnv::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.problems,
            ["apiman.probe_api: expected {org}/{api}/{version}"],
            "{bad}"
        );
    }
    // Disabled: the mode's requirements do not apply (the original example relies on it).
    let cfg = config::parse(
        "apiman:\n  enabled: false\n  probe_api: x\n",
        "t",
        &MapEnv::new(),
    )
    .unwrap();
    assert!(!cfg.apiman.enabled);
}

#[test]
fn empty_documents_are_empty_configs() {
    for text in [
        "",
        "  \n# only a comment\n",
        "{}",
        "mcp_servers:\nbackends:\nassistants:\n",
    ] {
        let cfg =
            config::parse(text, "t", &MapEnv::new()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(
            cfg.assistants.is_empty() && cfg.backends.is_empty(),
            "{text:?}"
        );
        assert!(cfg.proxy_api_keys.is_empty());
    }
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let yaml = "
backends:
  a: &base {base_url: 'https://a.example.com/v1/', timeout: 10s}
  b: {<<: *base, kind: anthropic}
";
    let cfg = config::parse(yaml, "t", &MapEnv::new()).unwrap();
    assert_eq!(cfg.backends["a"].base_url, "https://a.example.com/v1");
    assert_eq!(cfg.backends["b"].base_url, "https://a.example.com/v1");
    assert_eq!(cfg.backends["b"].kind, BackendKind::Anthropic);
    assert_eq!(cfg.backends["b"].timeout, Duration::from_secs(10));
}

#[test]
fn item_validators_for_admin_bodies() {
    let env = MapEnv::new().with("TOKEN", "t0k");

    let s = mcp_server_from_value(
        "remote",
        &json!({"transport": "http", "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": "Bearer ${TOKEN}"}, "call_timeout": 5}),
        &env,
    )
    .unwrap();
    match &s.transport {
        McpTransport::StreamableHttp { url, headers } => {
            assert_eq!(url, "https://mcp.example.com/mcp");
            assert_eq!(headers["Authorization"].expose(), "Bearer t0k");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.call_timeout, Duration::from_secs(5));
    let err = mcp_server_from_value("x", &json!({"transport": "sse", "command": "sh"}), &env)
        .unwrap_err();
    assert_eq!(
        err,
        [
            "command: not valid for transport sse (stdio only)",
            "url: missing required field (transport sse)"
        ]
    );
    let err = mcp_server_from_value("", &json!([1]), &env).unwrap_err();
    assert_eq!(
        err,
        [
            "name: must not be empty",
            "(body): expected a mapping, found a list"
        ]
    );

    let b = backend_from_value(
        "o",
        &json!({"base_url": "https://api.openai.com/v1/", "api_key": ""}),
        &env,
    )
    .unwrap();
    assert_eq!(
        (b.kind, b.base_url.as_str(), b.api_key.clone()),
        (BackendKind::OpenAi, "https://api.openai.com/v1", None)
    );
    let err = backend_from_value("o", &json!({"kind": "gpt", "bogus_field": 1}), &env).unwrap_err();
    // JSON objects arrive with sorted keys, so problems follow key order here.
    assert_eq!(
        err,
        [
            "bogus_field: unknown field",
            "kind: expected one of openai, openai-responses, anthropic, mock"
        ]
    );

    // The path name overrides the body's name; references are checked separately.
    let a = assistant_from_value(
        "coder",
        &json!({"name": "ignored", "backend": "openai", "model": "gpt-4o",
                "mcp_servers": ["filesystem"], "system_prompt": "You are a coding agent."}),
        &env,
    )
    .unwrap();
    assert_eq!(
        (a.name.as_str(), a.backend.as_str(), a.max_tool_iterations),
        ("coder", "openai", 8)
    );
    let err = assistant_from_value(
        "coder",
        &json!({"model": "m", "temperature": "hot", "extra_body": {"k": [1]}}),
        &env,
    )
    .unwrap_err();
    assert_eq!(
        err,
        [
            "temperature: expected a number",
            "backend: missing required field"
        ]
    );

    // check_references on a candidate config, as the admin API does.
    let mut cfg = config::parse("backends: {mock: {kind: mock}}", "t", &env).unwrap();
    cfg.assistants.push(a);
    assert_eq!(
        check_references(&cfg),
        [
            "assistants[0].backend: unknown backend 'openai'",
            "assistants[0].mcp_servers[0]: unknown MCP server 'filesystem'"
        ]
    );
    let mock_one = assistant_from_value("m", &json!({"backend": "mock"}), &env).unwrap();
    cfg.assistants = vec![mock_one];
    assert!(check_references(&cfg).is_empty());
    cfg.backends.clear();
    assert_eq!(
        check_references(&cfg),
        ["assistants[0].backend: unknown backend 'mock'"]
    );
}

#[test]
fn secrets_stay_redacted_in_debug_output() {
    let env = MapEnv::new().with("K", "sk-very-secret");
    let yaml = "
mcp_servers:
  s: {command: x, env: {TOKEN: '${K}'}}
  r: {transport: http, url: 'http://h/mcp', headers: {Authorization: 'Bearer ${K}'}}
backends:
  o: {base_url: 'http://h/v1', api_key: '${K}', default_headers: {X-Org: '${K}'}}
proxy_api_keys: ['${K}']
apiman: {secret: '${K}'}
";
    let cfg = config::parse(yaml, "t", &env).unwrap();
    let dump = format!("{cfg:?}");
    assert!(!dump.contains("sk-very-secret"), "{dump}");
    assert_eq!(dump.matches("***").count(), 6, "{dump}");
}

#[test]
fn keys_without_values_take_defaults() {
    let yaml = "
mcp_servers:
  s:
    transport:
    command: tool
    description:
    call_timeout:
backends:
  b:
    kind:
    base_url: http://h/v1
    api_key:
assistants:
  - name: a
    backend: b
    model: m
    temperature:
    mcp_servers:
server:
  workers:
";
    let cfg = config::parse(yaml, "t", &MapEnv::new()).unwrap();
    let s = &cfg.mcp_servers["s"];
    assert!(matches!(s.transport, McpTransport::Stdio { .. }));
    assert_eq!(
        (s.description.clone(), s.call_timeout),
        (None, Duration::from_secs(60))
    );
    assert_eq!(
        (cfg.backends["b"].kind, cfg.backends["b"].api_key.clone()),
        (BackendKind::OpenAi, None)
    );
    assert_eq!(cfg.assistants[0].temperature, None);
    assert_eq!(cfg.server.workers, 1024);
}
