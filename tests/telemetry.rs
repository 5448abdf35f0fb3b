//! OpenTelemetry traces (issue 17, point 1): OTLP/HTTP JSON export decoded with the official
//! protobuf definitions (`opentelemetry-proto`, strict `json_format.Parse`), the span tree of a
//! request with two tool rounds, the client's `traceparent` honoured and passed to the
//! upstream, and a dead collector that drops spans (counted) without slowing requests.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::fake_http::FakeHttp;
use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{TestGateway, request};
use crate::support::peers::{free_port, http_faults, support_script, venv_python};
use crate::support::wait;

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// One export as received: path, headers, JSON body.
type Export = (String, Vec<(String, String)>, Value);

/// An OTLP/HTTP receiver: records each POST's path, headers and JSON body; answers 200.
struct Collector {
    http: FakeHttp,
    got: Arc<Mutex<Vec<Export>>>,
}

impl Collector {
    fn start() -> Collector {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = Arc::clone(&got);
        let http = FakeHttp::start("otlp", move |mut conn| {
            while let Some(req) = conn.next_request() {
                let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                g.lock()
                    .push((req.target.clone(), req.headers.clone(), body));
                conn.send(200, &[], b"{}");
            }
        });
        Collector { http, got }
    }

    fn url(&self) -> String {
        format!("http://{}", self.http.addr())
    }

    fn span_count(&self) -> usize {
        self.got
            .lock()
            .iter()
            .map(|(_, _, b)| {
                b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .map_or(0, Vec::len)
            })
            .sum()
    }

    /// Every span received, decoded by the Python check.
    fn decoded(&self) -> Vec<Value> {
        let bodies: Vec<Value> = self.got.lock().iter().map(|(_, _, b)| b.clone()).collect();
        let file = std::env::temp_dir().join(format!("aiproxy-otlp-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_vec(&bodies).unwrap()).unwrap();
        let out = Command::new(venv_python())
            .arg(support_script("otlp_check.py"))
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "otlp_check.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn config(upstream: &str, collector: &str) -> String {
    let mut yaml = Config::new()
        .demo_mcp()
        .openai("up", upstream, json!({"api_key": "sk-upstream"}))
        .assistant(json!({"name": "calc", "backend": "up", "model": "gpt-test",
                          "mcp_servers": ["demo"]}))
        .yaml();
    yaml.push_str(&format!(
        "telemetry:\n  otlp_endpoint: {collector}\n  headers: {{x-otlp-key: otlp-secret}}\n  service_name: gw-test\n"
    ));
    yaml
}

fn ask(stream: bool) -> Vec<u8> {
    json!({"model": "calc", "stream": stream,
           "messages": [{"role": "user", "content": "what is (2 + 3) + 4? ✓"}]})
    .to_string()
    .into_bytes()
}

#[test]
fn span_tree_of_a_request_with_two_tool_rounds() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).usage(11, 2));
    up.push(Reply::tool_call("demo__add", r#"{"a":5,"b":4}"#).usage(13, 2));
    up.push(Reply::text("It is 9.").usage(17, 3));
    let col = Collector::start();
    let gw = TestGateway::start(&config(&up.url(), &col.url()));
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json"), ("traceparent", &tp)],
        &ask(false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait::until(Duration::from_secs(20), "6 spans exported", || {
        col.span_count() >= 6
    });
    // The export itself: path, content type, configured headers.
    {
        let got = col.got.lock();
        let (path, headers, _) = &got[0];
        assert_eq!(path, "/v1/traces");
        let h = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("x-otlp-key").as_deref(), Some("otlp-secret"));
    }
    let spans = col.decoded();
    assert_eq!(spans.len(), 6, "{spans:#?}");
    for s in &spans {
        assert_eq!(s["trace_id"], CLIENT_TRACE, "the client's trace: {s}");
        assert_eq!(s["service"], "gw-test");
    }
    let root: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parent"] == CLIENT_SPAN)
        .collect();
    assert_eq!(
        root.len(),
        1,
        "one request span under the client's: {spans:#?}"
    );
    let root = root[0];
    assert_eq!(root["name"], "chat calc");
    assert_eq!(root["kind"], 2, "server");
    let a = &root["attrs"];
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.request.model"], "calc");
    assert_eq!(a["gen_ai.provider.name"], "openai");
    assert_eq!(a["http.route"], "/v1/chat/completions");
    assert_eq!(a["http.response.status_code"], 200);
    assert_eq!(a["aiproxy.tool_calls"], 2);
    let root_id = root["span_id"].as_str().unwrap();

    let rounds: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert_eq!(rounds.len(), 3, "{spans:#?}");
    let mut inputs: Vec<i64> = Vec::new();
    for r in &rounds {
        assert_eq!(r["parent"], root_id);
        assert_eq!(r["name"], "chat gpt-test");
        assert_eq!(r["attrs"]["gen_ai.request.model"], "gpt-test");
        assert_eq!(r["attrs"]["aiproxy.backend"], "up");
        inputs.push(r["attrs"]["gen_ai.usage.input_tokens"].as_i64().unwrap());
    }
    inputs.sort();
    assert_eq!(inputs, [11, 13, 17]);
    let finishes: Vec<&Value> = rounds
        .iter()
        .map(|r| &r["attrs"]["gen_ai.response.finish_reasons"][0])
        .collect();
    assert_eq!(finishes.iter().filter(|f| **f == "tool_calls").count(), 2);
    assert_eq!(finishes.iter().filter(|f| **f == "stop").count(), 1);

    let tools: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 1).collect();
    assert_eq!(tools.len(), 2, "{spans:#?}");
    for t in &tools {
        assert_eq!(t["parent"], root_id);
        assert_eq!(t["name"], "execute_tool add");
        assert_eq!(t["attrs"]["gen_ai.tool.name"], "add");
        assert_eq!(t["attrs"]["aiproxy.mcp.server"], "demo");
        assert_eq!(t["attrs"]["aiproxy.tool.outcome"], "ok");
        assert_eq!(t["status"], 0);
    }

    // Each upstream round carried a traceparent naming its round span.
    let mut sent: Vec<String> = up
        .completions()
        .iter()
        .map(|r| r.header("traceparent").unwrap_or("").to_string())
        .collect();
    let mut want: Vec<String> = rounds
        .iter()
        .map(|r| format!("00-{CLIENT_TRACE}-{}-01", r["span_id"].as_str().unwrap()))
        .collect();
    sent.sort();
    want.sort();
    assert_eq!(sent, want);

    // Streaming: the upstream is read on a thread of its own and still gets the trace; a
    // request without a traceparent starts a new trace.
    up.push(Reply::text("streamed"));
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        &ask(true),
    );
    assert_eq!(r.status, 200);
    let last = up.last_request().unwrap();
    let tp = last.header("traceparent").unwrap_or("");
    assert_eq!(tp.len(), 55, "{tp}");
    assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
    assert!(!tp.contains(CLIENT_TRACE));
}

fn metric(gw: &TestGateway, name: &str) -> u64 {
    let text = gw.admin("GET", "/metrics", &[], b"").text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

/// A collector that accepts connections and never answers, and one that refuses them: the
/// requests take as long as without tracing, and the lost spans are counted.
#[test]
fn dead_collector_drops_spans_without_slowing_requests() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let refused_url = format!("http://{refused}");
    let yaml = "mcp_servers:\n  demo: {command: '${AIPROXY_EXE}', args: [demo-mcp]}\nbackends: {m: {kind: mock}}\nassistants: [{name: calc, backend: m, mcp_servers: [demo]}]\n";
    for (label, url) in [("silent", silent_url), ("refused", refused_url)] {
        // The standard variable works when the config names no endpoint.
        let gw = TestGateway::start_with_env(yaml, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)]);
        let body =
            json!({"model": "calc", "messages": [{"role": "user", "content": "what is 2 + 3?"}]});
        let started = Instant::now();
        for _ in 0..20 {
            let t = Instant::now();
            let r = gw.chat(&body);
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "{label}: a request took {:?}",
                t.elapsed()
            );
        }
        // 20 requests of a mock backend and a local tool: well under the 5 s export timeout.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{label}: {:?}",
            started.elapsed()
        );
        wait::until(Duration::from_secs(30), "spans counted as dropped", || {
            metric(&gw, "aiproxy_trace_spans_dropped_total") > 0
        });
        assert_eq!(metric(&gw, "aiproxy_trace_spans_exported_total"), 0);
    }
    drop(silent);
}

/// A tool call to a streamable-HTTP MCP server carries a `traceparent` naming its tool span.
#[test]
fn http_mcp_server_gets_the_tool_calls_traceparent() {
    let port = free_port();
    let _peer = http_faults("normal", port);
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("f__echo", r#"{"text":"hi"}"#));
    up.push(Reply::tool_call("f__log", "{}"));
    up.push(Reply::text("done"));
    let col = Collector::start();
    let mut yaml = Config::new()
        .mcp_server(
            "f",
            json!({"transport": "streamable-http", "url": format!("http://127.0.0.1:{port}/mcp")}),
        )
        .openai("up", &up.url(), json!({"api_key": "sk-upstream"}))
        .assistant(json!({"name": "a", "backend": "up", "model": "m", "mcp_servers": ["f"]}))
        .yaml();
    yaml.push_str(&format!("telemetry: {{otlp_endpoint: '{}'}}\n", col.url()));
    let gw = TestGateway::start(&yaml);
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let body = json!({"model": "a", "messages": [{"role": "user", "content": "go"}]});
    let r = request(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json"), ("traceparent", &tp)],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait::until(Duration::from_secs(20), "6 spans exported", || {
        col.span_count() >= 6
    });
    let spans = col.decoded();
    let echo_span = spans
        .iter()
        .find(|s| s["name"] == "execute_tool echo")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    // The third round's input holds the `log` tool's result: what the server saw.
    let third = &up.completions()[2].body;
    let log_text = third["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap()
        .to_string();
    let log: Vec<Value> = serde_json::from_str(&log_text).unwrap();
    let echo_call = log
        .iter()
        .find(|e| e["rpc"] == "tools/call")
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(
        echo_call["traceparent"],
        format!(
            "00-{CLIENT_TRACE}-{}-01",
            echo_span["span_id"].as_str().unwrap()
        )
    );
}
