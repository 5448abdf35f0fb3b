//! The embedded demo config, used when no config file exists: a `demo` assistant on the
//! built-in `mock` backend with the built-in demo MCP server (this same binary, run as
//! `demo-mcp`). No network and no API key needed. Constant data only.

/// YAML text, read like any config file; `${AIPROXY_EXE}` comes from [`super::Env`].
pub const DEMO_CONFIG_YAML: &str = r#"# aiproxy embedded demo config (used when no config file exists).
mcp_servers:
  demo:
    transport: stdio
    command: ${AIPROXY_EXE}
    args: [demo-mcp]
    description: Built-in demo tools (add, echo, uppercase, sleep).

backends:
  mock:
    kind: mock

assistants:
  - name: demo
    backend: mock
    model: mock
    description: Demo assistant on the built-in mock backend with the built-in demo tools.
    system_prompt: You are a helpful demo assistant. Use the tools when they help.
    mcp_servers: [demo]
"#;

#[cfg(test)]
mod tests {
    use super::super::{BackendKind, MapEnv, McpTransport, demo};

    #[test]
    fn demo_config_runs_this_binary() {
        let env = MapEnv::new().with("AIPROXY_EXE", "/opt/bin/aiproxy");
        let cfg = demo(&env).unwrap();
        let a = cfg.assistant("demo").unwrap();
        assert_eq!(
            (a.backend.as_str(), a.mcp_servers.as_slice()),
            ("mock", &["demo".to_string()][..])
        );
        assert!(a.system_prompt.is_some() && a.description.is_some());
        assert_eq!(cfg.backends["mock"].kind, BackendKind::Mock);
        match &cfg.mcp_servers["demo"].transport {
            McpTransport::Stdio { command, args, .. } => {
                assert_eq!(command, "/opt/bin/aiproxy");
                assert_eq!(args, &["demo-mcp".to_string()]);
            }
            other => panic!("unexpected transport {other:?}"),
        }
    }

    #[test]
    fn demo_config_without_exe_says_so() {
        let err = demo(&MapEnv::new()).unwrap_err();
        assert_eq!(
            err.problems,
            ["mcp_servers.demo.command: must not be empty"]
        );
    }
}
