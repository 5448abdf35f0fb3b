//! What the model, the admin API and the log see when an MCP server fails (issue 15): short,
//! stable tool errors naming the server; stderr and secrets never leave the process; a down
//! server keeps its last known tools and is named in `X-Aiproxy-Degraded`; arguments that are
//! not an object are refused; tool output is passed byte for byte.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{Response, TestGateway, admin_request, request};
use crate::support::peers;

/// aiproxy as a child process at its default log level, stderr in a file.
struct LoggedGateway {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl LoggedGateway {
    fn start(name: &str, yaml: &str) -> LoggedGateway {
        let dir = std::env::temp_dir().join(format!("aiproxy-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
        let (addr, admin) = (free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_aiproxy"))
            .args(["serve", "--config"])
            .arg(dir.join("config.yaml"))
            .args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let gw = LoggedGateway {
            child,
            addr,
            admin,
            dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(admin).is_err()
            || request(admin, "GET", "/health", &[], b"").status != 200
        {
            assert!(Instant::now() < end, "aiproxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        gw
    }

    fn chat(&self, body: &Value, request_id: &str) -> Response {
        request(
            self.addr,
            "POST",
            "/v1/chat/completions",
            &[
                ("Content-Type", "application/json"),
                ("X-Request-Id", request_id),
            ],
            body.to_string().as_bytes(),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap()
    }
}

impl Drop for LoggedGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ask(text: &str) -> Value {
    json!({"model": "a", "messages": [{"role": "user", "content": text}]})
}

/// The tool messages of the last completion request the fake upstream received.
fn tool_messages(up: &FakeOpenAi) -> Vec<Value> {
    let last = up.last_request().expect("no upstream request");
    last.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

fn tool_text(up: &FakeOpenAi) -> String {
    let msgs = tool_messages(up);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    msgs[0]["content"].as_str().unwrap().to_string()
}

fn gateway_yaml(up: &FakeOpenAi, key: &str, servers_yaml: &str, names: &str) -> String {
    format!(
        "backends:\n  up:\n    kind: openai\n    base_url: {}\n    api_key: {key}\n    timeout: 20s\n\
         mcp_servers:\n{servers_yaml}\
         assistants:\n  - name: a\n    backend: up\n    model: m\n    mcp_servers: [{names}]\n",
        up.url()
    )
}

const TOKEN: &str = "s3cr3t-value-123";
const BACKEND_KEY: &str = "plainbackendvalue99";

#[test]
fn server_stderr_and_secrets_reach_neither_the_model_nor_the_admin_api_nor_warn_logs() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("leaky__crash", "{}"));
    up.push(Reply::text("done"));
    let script = peers::support_script("mcp_faults.py");
    // The server prints its token (configured env value), the backend's key (a configured
    // secret it should not know, shapeless) and a key-shaped word, then dies mid-call.
    let shell = format!(
        "echo \"debug: using token=$SERVICE_TOKEN; bare $SERVICE_TOKEN; {}\"\"{}\" >&2; exec python3 {script} crash",
        &BACKEND_KEY[..12],
        &BACKEND_KEY[12..]
    );
    let servers = format!(
        "  leaky:\n    command: sh\n    args: [\"-c\", {}]\n    env: {{SERVICE_TOKEN: {TOKEN}}}\n",
        serde_json::to_string(&shell).unwrap()
    );
    let gw = LoggedGateway::start("leaky", &gateway_yaml(&up, BACKEND_KEY, &servers, "leaky"));
    let r = gw.chat(&ask("crash please"), "req-leaky-1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        tool_text(&up),
        "[tool error] server 'leaky' stopped (exit status 3)"
    );

    let admin = admin_request(gw.admin, "GET", "/admin/mcp/leaky", &[], b"");
    assert_eq!(admin.status, 200, "{}", admin.text());
    let status = admin.json()["status"].clone();
    let last_error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(last_error.contains("status 3"), "{status}");
    // The admin still sees the server's last words, masked.
    assert!(
        last_error.contains("debug: using token=***"),
        "{last_error}"
    );

    let log = gw.log();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("session ended"), "{log}");
    // MCP lines logged for a request carry its id.
    assert!(
        log.contains(
            "req-leaky-1 mcp[leaky]: tools/call crash failed: server stopped (exit status 3)"
        ),
        "{log}"
    );
    for leak in [TOKEN, BACKEND_KEY] {
        assert!(
            !admin.text().contains(leak),
            "{leak} in the admin API: {}",
            admin.text()
        );
    }
    // Stderr goes to the debug log only: not even masked at the default level.
    for leak in [TOKEN, BACKEND_KEY, "debug: using", "crashing on purpose"] {
        assert!(!log.contains(leak), "{leak} in the log:\n{log}");
        assert!(!r.text().contains(leak));
    }
    for req in up.requests() {
        let body = String::from_utf8_lossy(&req.raw_body).to_string();
        assert!(!body.contains(TOKEN) && !body.contains("debug:"), "{body}");
    }
}

fn python_stdio_server(name: &str) -> String {
    format!(
        "  {name}:\n    command: {}\n    args: [\"{}\", stdio]\n    startup_timeout: 20s\n",
        peers::venv_python(),
        peers::support_script("py_mcp_server.py")
    )
}

#[test]
fn tool_output_reaches_the_model_byte_for_byte() {
    let code = "    def f():\n        return 1\n\n\n";
    let up = FakeOpenAi::start();
    let args = json!({ "text": code }).to_string();
    up.push(Reply::tool_call("py__echo", &args));
    up.push(Reply::text("done"));
    let gw = TestGateway::start(&gateway_yaml(&up, "k", &python_stdio_server("py"), "py"));
    let r = gw.chat(&ask("echo some code"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tool_text(&up), code);
}

fn tool_texts(up: &FakeOpenAi) -> Vec<String> {
    tool_messages(up)
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

fn points_stdio(name: &str) -> String {
    format!(
        "  {name}:\n    command: {}\n    args: [\"{}\", stdio]\n    startup_timeout: 20s\n",
        peers::venv_python(),
        peers::support_script("py_mcp_points.py")
    )
}

#[test]
fn a_down_server_is_named_to_the_model_and_in_the_degraded_header() {
    let port = peers::free_port();
    let script = peers::support_script("py_mcp_points.py");
    let mut peer = peers::Peer::spawn(
        &peers::venv_python(),
        &[&script, "http", &port.to_string()],
        &[],
        port,
    );
    let closed = peers::free_port();
    let servers = format!(
        "  r:\n    transport: http\n    url: http://127.0.0.1:{port}/mcp\n    startup_timeout: 20s\n  \
         never:\n    transport: http\n    url: http://127.0.0.1:{closed}/mcp\n    startup_timeout: 5s\n"
    );
    let up = FakeOpenAi::start();
    let gw = TestGateway::start(&gateway_yaml(&up, "k", &servers, "r, never"));

    up.push(Reply::tool_call("r__echo", r#"{"text":"hi"}"#));
    up.push(Reply::text("done"));
    let r = gw.chat(&ask("one"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Aiproxy-Degraded"), Some("never"));
    assert_eq!(tool_texts(&up), ["hi"]);

    peer.kill();
    up.push(Reply::tool_call("r__echo", r#"{"text":"hi"}"#));
    up.push(Reply::text("done"));
    let r = gw.chat(&ask("two"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        tool_texts(&up),
        ["[tool error] server 'r' is unavailable; try again later"]
    );

    // Now known to be down: named in the header, its last known tools still offered, and a
    // call under a never-reachable server's prefix is that server's, not an unknown tool.
    up.push(Reply::tool_calls(&[
        ("never__add", r#"{"a":1}"#),
        ("r__echo", r#"{"text":"hi"}"#),
        ("nosuch__tool", "{}"),
    ]));
    up.push(Reply::text("done"));
    let r = gw.chat(&ask("three"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Aiproxy-Degraded"), Some("r,never"));
    let offered = up.completions()[4].tool_names();
    assert!(offered.contains(&"r__echo".to_string()), "{offered:?}");
    assert_eq!(
        tool_texts(&up),
        [
            "[tool error] server 'never' is unavailable; try again later",
            "[tool error] server 'r' is unavailable; try again later",
            "[tool error] unknown tool 'nosuch__tool'",
        ]
    );
    for t in tool_texts(&up) {
        assert!(!t.contains("127.0.0.1") && !t.contains("os error"), "{t}");
    }
}

#[test]
fn arguments_that_are_not_an_object_are_refused_except_null_and_empty() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_calls(&[
        ("p__old_tool", "null"),
        ("p__old_tool", ""),
        ("p__old_tool", r#""""#),
        ("p__echo", r#""str""#),
        ("p__echo", "42"),
        ("p__echo", r#"["list"]"#),
    ]));
    up.push(Reply::text("done"));
    let gw = TestGateway::start(&gateway_yaml(&up, "k", &points_stdio("p"), "p"));
    let r = gw.chat(&ask("args"));
    assert_eq!(r.status, 200, "{}", r.text());
    let texts = tool_texts(&up);
    assert_eq!(
        &texts[..3],
        ["old tool here", "old tool here", "old tool here"]
    );
    for (t, kind) in texts[3..].iter().zip(["a string", "a number", "an array"]) {
        assert_eq!(
            t,
            &format!(
                "[tool error] invalid arguments for 'p__echo': the arguments must be a JSON \
                 object matching the tool's input schema, not {kind}"
            )
        );
    }
}

#[test]
fn shortened_and_suffixed_names_keep_the_tool_name_and_say_the_server() {
    let long = format!("srv{}", "x".repeat(47));
    let everything = format!(
        "  {long}:\n    command: {}\n    args: [\"{}\", stdio]\n    startup_timeout: 20s\n",
        peers::node(),
        peers::everything_js()
    );
    let servers = format!(
        "{everything}{}{}",
        points_stdio("my.every"),
        points_stdio("my_every")
    );
    let up = FakeOpenAi::start();
    up.push(Reply::text("hello"));
    let gw = TestGateway::start(&gateway_yaml(
        &up,
        "k",
        &servers,
        &format!("{long}, my.every, my_every"),
    ));
    assert_eq!(gw.chat(&ask("hi")).status, 200);
    let req = up.last_request().unwrap();
    let tools = req.body["tools"].as_array().unwrap().clone();
    let find = |suffix: &str| -> Vec<Value> {
        tools
            .iter()
            .filter(|t| t["function"]["name"].as_str().unwrap().ends_with(suffix))
            .cloned()
            .collect()
    };
    // The long server name is shortened; the tool's own name stays whole.
    let links = find("__get-resource-links");
    assert_eq!(links.len(), 1, "{tools:?}");
    let name = links[0]["function"]["name"].as_str().unwrap();
    assert!(name.len() <= 64 && name.starts_with("srvxxx"), "{name}");
    assert!(
        links[0]["function"]["description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("(MCP server '{long}') ")),
        "{}",
        links[0]
    );
    // Two servers that sanitize alike: both keep `echo` whole and say which server they are.
    let echoes = find("__echo");
    let mine: Vec<&Value> = echoes
        .iter()
        .filter(|t| {
            t["function"]["name"]
                .as_str()
                .unwrap()
                .starts_with("my_every_")
        })
        .collect();
    assert_eq!(mine.len(), 2, "{echoes:?}");
    assert_ne!(mine[0]["function"]["name"], mine[1]["function"]["name"]);
    let descs: Vec<&str> = mine
        .iter()
        .map(|t| t["function"]["description"].as_str().unwrap())
        .collect();
    assert!(
        descs.contains(&"(MCP server 'my.every') Return the text unchanged."),
        "{descs:?}"
    );
    assert!(
        descs.contains(&"(MCP server 'my_every') Return the text unchanged."),
        "{descs:?}"
    );
}
