//! `aiproxy check --connect` on the real binary: per assistant the tool names the model will
//! see, notes on names that were shortened, collided or had characters replaced, the schema
//! size in tokens, and exit 1 when a server cannot start.

use std::process::Command;
use std::time::Duration;

use aiproxy::tools::naming::assign_names;

use super::proc::{Proc, TempDir, exe};

const LONG: &str = "a-very-long-mcp-server-name-that-leaves-no-room-for-tool-names-x";

fn config(extra_server: &str) -> String {
    format!(
        r#"
mcp_servers:
  demo: {{command: "${{AIPROXY_EXE}}", args: [demo-mcp]}}
  a.b: {{command: "${{AIPROXY_EXE}}", args: [demo-mcp]}}
  a_b: {{command: "${{AIPROXY_EXE}}", args: [demo-mcp]}}
  {LONG}: {{command: "${{AIPROXY_EXE}}", args: [demo-mcp]}}
  my.srv: {{command: "${{AIPROXY_EXE}}", args: [demo-mcp]}}
  {extra_server}
backends:
  mock: {{kind: mock}}
assistants:
  - name: ops
    backend: mock
    model: mock
    mcp_servers: [demo, a.b, a_b, {LONG}, my.srv]
  - name: plain
    backend: mock
    model: mock
    mcp_servers: [demo]
    denied_tools: ["*__sleep"]
"#
    )
}

fn run_check(dir: &TempDir, yaml: &str) -> (Option<i32>, Vec<String>) {
    let path = dir.write("config.yaml", yaml);
    let mut cmd = Command::new(exe());
    cmd.args(["check", "--connect", "--config", path.to_str().unwrap()])
        .current_dir(dir.path())
        .env_remove("RUST_LOG");
    let mut p = Proc::spawn(cmd);
    let status = p.wait_exit(Duration::from_secs(60));
    (status.code(), p.stdout.clone())
}

/// The lines of one assistant's section.
fn section<'a>(out: &'a [String], assistant: &str) -> Vec<&'a str> {
    let head = format!("assistant {assistant}:");
    out.iter()
        .skip_while(|l| !l.starts_with(&head))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with("  "))
        .map(|(_, l)| l.as_str())
        .collect()
}

fn tool_line<'a>(lines: &[&'a str], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in {lines:#?}"))
}

#[test]
fn check_connect_reports_exposed_names_and_schema_size() {
    let dir = TempDir::new("check");
    let (code, out) = run_check(&dir, &config(""));
    assert_eq!(code, Some(0), "{out:#?}");

    let ops = section(&out, "ops");
    let head = ops[0];
    assert!(
        head.starts_with("assistant ops: 20 tools, tool schemas ~"),
        "{head}"
    );
    // "~N tokens (M bytes of JSON)" with N = M / 4 rounded up.
    let nums: Vec<usize> = head
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (tokens, bytes) = (nums[1], nums[2]);
    assert!(bytes > 500, "{head}");
    assert_eq!(tokens, bytes.div_ceil(4), "{head}");
    assert_eq!(ops.len(), 21, "{ops:#?}");

    // Exactly the names a request offers the model.
    let servers = ["demo", "a.b", "a_b", LONG, "my.srv"];
    let tools = ["add", "echo", "uppercase", "sleep"];
    let pairs: Vec<(&str, &str)> = servers
        .iter()
        .flat_map(|s| tools.iter().map(move |t| (*s, *t)))
        .collect();
    let names = assign_names(&pairs);
    for ((server, tool), name) in pairs.iter().zip(&names) {
        let line = tool_line(&ops, name);
        assert!(name.len() <= 64, "{name}");
        match *server {
            "demo" => assert!(!line.contains('['), "plain names carry no note: {line}"),
            "a.b" | "a_b" => {
                // Servers that sanitize alike: a hash of the server, the tool's name whole.
                assert!(
                    name.starts_with("a_b_") && name.ends_with(&format!("__{tool}")),
                    "{name}"
                );
                assert!(
                    line.contains(&format!(
                        "[collision: 'a_b__{tool}' is exposed by several tools; '{server}' / '{tool}' got a suffix]"
                    )),
                    "{line}"
                );
            }
            "my.srv" => {
                assert_eq!(*name, format!("my_srv__{tool}"));
                assert!(
                    line.contains(&format!("[renamed: 'my.srv' / '{tool}' has characters")),
                    "{line}"
                );
            }
            _ => {
                // The server part is shortened; the tool's own name stays whole.
                assert!(name.ends_with(&format!("__{tool}")), "{name}");
                assert!(
                    line.contains(&format!("[shortened: '{LONG}' / '{tool}' is")),
                    "{line}"
                );
            }
        }
        assert!(line.contains(" tokens"), "{line}");
    }

    let plain = section(&out, "plain");
    assert!(
        plain[0].starts_with("assistant plain: 3 tools,"),
        "{plain:#?}"
    );
    assert!(
        !plain.iter().any(|l| l.contains("demo__sleep")),
        "{plain:#?}"
    );
    tool_line(&plain, "demo__add");
}

#[test]
fn check_connect_fails_when_a_server_cannot_start() {
    let dir = TempDir::new("check-broken");
    let yaml = config("broken: {command: /nonexistent/mcp-server}")
        .replace("mcp_servers: [demo]\n", "mcp_servers: [demo, broken]\n");
    let (code, out) = run_check(&dir, &yaml);
    assert_eq!(code, Some(1), "{out:#?}");
    let plain = section(&out, "plain");
    assert!(
        plain
            .iter()
            .any(|l| l.starts_with("  ! MCP server 'broken' failed:")),
        "{plain:#?}"
    );
}
