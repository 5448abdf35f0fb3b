//! The offline demo: the embedded config used when no config file exists (a `demo` assistant
//! on the built-in `mock` backend with the built-in demo MCP server) and that demo MCP server
//! itself (`aiproxy demo-mcp`, in [`mcp_server`]). No network and no API key needed.

pub mod mcp_server;

use crate::config::{self, Config, EnvLookup};

/// The demo config's YAML text (`config.yaml` beside this file), read like any config file;
/// `${AIPROXY_EXE}`, the path of the running binary, comes from [`config::Env`].
pub const CONFIG_YAML: &str = include_str!("config.yaml");

/// The embedded demo config, parsed and validated like a file.
pub fn config(env: &dyn EnvLookup) -> Result<Config, config::Error> {
    config::parse(CONFIG_YAML, "<embedded demo config>", env)
}

#[cfg(test)]
mod tests {
    use super::config as demo;
    use crate::config::{BackendKind, MapEnv, McpTransport};

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
