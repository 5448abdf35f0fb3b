//! The Responses API (`/v1/responses`): the MCP tool loop as `mcp_call` items, semantic
//! streaming, client function tools, the response store (`previous_response_id`, GET, DELETE,
//! eviction), refusals, and hostile bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_openai::{FakeOpenAi, Reply};
use crate::support::gateway::{Response, SseClient, TestGateway, request};

fn post(gw: &TestGateway, body: &Value) -> Response {
    gw.post_json("/v1/responses", body)
}

fn ok(gw: &TestGateway, body: &Value) -> Value {
    let r = post(gw, body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// `(event name, data)` of every SSE event; comments skipped.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(d).unwrap());
                }
            }
            Some((name?, data?))
        })
        .collect()
}

fn item_types(resp: &Value) -> Vec<String> {
    resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap().to_string())
        .collect()
}

/// The output with per-call ids and timestamps blanked, for comparing two runs.
fn comparable_output(resp: &Value) -> Value {
    let mut out = resp["output"].clone();
    for item in out.as_array_mut().unwrap() {
        item["id"] = json!("-");
        if item.get("call_id").is_some() {
            item["call_id"] = json!("-");
        }
    }
    out
}

fn output_text(resp: &Value) -> String {
    resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

#[test]
fn responses_non_stream_runs_the_mcp_tool_as_an_mcp_call_item() {
    let gw = TestGateway::demo();
    let r = post(&gw, &json!({"model": "demo", "input": "what is 2 + 3?"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("X-Request-Id").is_some());
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "demo");
    assert!(v["created_at"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["incomplete_details"], Value::Null);
    assert_eq!(v["store"], true);
    assert_eq!(item_types(&v), ["message", "mcp_call", "message"]);
    let call = &v["output"][1];
    assert_eq!(call["server_label"], "demo");
    assert_eq!(
        call["name"], "add",
        "the tool's own name, not the exposed one"
    );
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"a": 2, "b": 3})
    );
    assert_eq!(call["output"], "5");
    assert_eq!(call["status"], "completed");
    let last = &v["output"][2];
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["status"], "completed");
    assert_eq!(last["content"][0]["type"], "output_text");
    assert_eq!(last["content"][0]["text"], "2 + 3 = 5.");
    assert_eq!(last["content"][0]["annotations"], json!([]));
    let u = &v["usage"];
    assert!(u["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 0);
}

#[test]
fn responses_stream_events_in_spec_order_and_same_final_response() {
    let gw = TestGateway::demo();
    let body = json!({"model": "demo", "input": "what is 2 + 3?", "stream": true});
    let r = post(&gw, &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/event-stream"));
    let text = r.text();
    assert!(
        text.contains(": running tools: demo__add"),
        "keep-alive comment while tools run"
    );
    let ev = events(&text);
    for (i, (name, data)) in ev.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "event name = data.type");
        assert_eq!(
            data["sequence_number"], i as u64,
            "sequence numbers count from 0"
        );
    }
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], ["response.created", "response.in_progress"]);
    assert_eq!(names.last(), Some(&"response.completed"));
    assert_eq!(ev[0].1["response"]["status"], "in_progress");
    // The mcp call's events, in order, between its item's added and done.
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    let expected = [
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
    ];
    let at: Vec<usize> = expected.iter().map(|n| pos(n)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    // Per item: added … done, text events inside, deltas add up to the done text.
    let mut open: Option<u64> = None;
    let mut deltas = String::new();
    for (name, d) in &ev {
        match name.as_str() {
            "response.output_item.added" => {
                assert!(open.is_none(), "items do not overlap: {names:?}");
                open = d["output_index"].as_u64();
                deltas.clear();
            }
            "response.output_text.delta"
            | "response.content_part.added"
            | "response.output_text.done" => {
                assert_eq!(d["output_index"].as_u64(), open);
                if name == "response.output_text.delta" {
                    deltas.push_str(d["delta"].as_str().unwrap());
                }
                if name == "response.output_text.done" {
                    assert_eq!(d["text"], deltas.as_str());
                }
            }
            "response.output_item.done" => {
                assert_eq!(d["output_index"].as_u64(), open);
                open = None;
            }
            _ => {}
        }
    }
    let streamed = &ev.last().unwrap().1["response"];
    let plain = ok(&gw, &json!({"model": "demo", "input": "what is 2 + 3?"}));
    assert_eq!(comparable_output(streamed), comparable_output(&plain));
    assert_eq!(streamed["usage"], plain["usage"]);
    assert_eq!(output_text(streamed), "Let me use the add tool.2 + 3 = 5.");
}

#[test]
fn responses_client_function_tool_round_trip() {
    let gw = TestGateway::demo();
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]);
    for stream in [false, true] {
        let body = json!({"model": "demo", "input": "What's the weather in Paris?", "tools": tools, "stream": stream});
        let r = post(&gw, &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = if stream {
            let ev = events(&r.text());
            let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
            assert!(names.contains(&"response.function_call_arguments.delta"));
            assert!(names.contains(&"response.function_call_arguments.done"));
            ev.last().unwrap().1["response"].clone()
        } else {
            r.json()
        };
        assert_eq!(v["status"], "completed");
        let last = v["output"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["type"], "function_call", "{v}");
        assert_eq!(last["name"], "get_weather");
        assert_eq!(last["status"], "completed");
        assert_eq!(
            serde_json::from_str::<Value>(last["arguments"].as_str().unwrap()).unwrap(),
            json!({"location": "Paris"})
        );
        assert_eq!(v["tools"][0]["name"], "get_weather", "client tools echoed");
        let call_id = last["call_id"].as_str().unwrap();

        // Continue with previous_response_id + the output.
        let next = ok(
            &gw,
            &json!({"model": "demo", "previous_response_id": v["id"], "tools": tools,
            "input": [{"type": "function_call_output", "call_id": call_id, "output": "sunny, 21 C"}]}),
        );
        assert_eq!(next["previous_response_id"], v["id"]);
        assert!(output_text(&next).contains("sunny, 21 C"), "{next}");
    }
    // The same without the store: the whole conversation as input.
    let v = ok(
        &gw,
        &json!({"model": "demo", "tools": tools, "store": false, "input": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "function_call", "call_id": "c9", "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "c9", "output": "rainy"}]}),
    );
    assert_eq!(output_text(&v), "The get_weather tool returned: rainy");
    assert_eq!(
        gw.get(&format!("/v1/responses/{}", v["id"].as_str().unwrap()))
            .status,
        404,
        "store: false keeps nothing"
    );
}

#[test]
fn responses_previous_response_id_get_and_delete() {
    let gw = TestGateway::demo();
    let first = ok(
        &gw,
        &json!({"model": "demo", "input": "what is 2 + 3?", "metadata": {"k": "v"}}),
    );
    let id = first["id"].as_str().unwrap();
    assert_eq!(first["metadata"], json!({"k": "v"}));

    let got = gw.get(&format!("/v1/responses/{id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), first, "GET returns the stored response");

    // The continuation carries the whole first exchange: more input tokens than alone.
    let alone = ok(&gw, &json!({"model": "demo", "input": "thanks"}));
    let next = ok(
        &gw,
        &json!({"model": "demo", "input": "thanks", "previous_response_id": id}),
    );
    assert!(
        next["usage"]["input_tokens"].as_u64() > alone["usage"]["input_tokens"].as_u64(),
        "{} vs {}",
        next["usage"],
        alone["usage"]
    );
    assert_eq!(output_text(&next), "You said: thanks");

    let del = request(gw.addr, "DELETE", &format!("/v1/responses/{id}"), &[], b"");
    assert_eq!(del.status, 200);
    assert_eq!(
        del.json(),
        json!({"id": id, "object": "response", "deleted": true})
    );
    assert_eq!(gw.get(&format!("/v1/responses/{id}")).status, 404);
    let del = request(gw.addr, "DELETE", &format!("/v1/responses/{id}"), &[], b"");
    assert_eq!(del.status, 404);

    let r = post(
        &gw,
        &json!({"model": "demo", "input": "again", "previous_response_id": id}),
    );
    assert_eq!(r.status, 400);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "previous_response_not_found");
    assert_eq!(e["param"], "previous_response_id");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("full conversation") && msg.contains("same replica"),
        "{msg}"
    );
}

#[test]
fn responses_mcp_calls_sent_back_reach_the_upstream_as_tool_messages() {
    let up = FakeOpenAi::start();
    up.push(Reply::tool_call("demo__add", r#"{"a":2,"b":3}"#).with_text("Adding."));
    up.push(Reply::text("The answer is 5."));
    up.push(Reply::text("You are welcome."));
    let yaml = format!(
        "mcp_servers:\n  demo:\n    command: ${{AIPROXY_EXE}}\n    args: [demo-mcp]\nbackends:\n  up:\n    kind: openai\n    base_url: {}\n    api_key: sk-up\nassistants:\n  - name: calc\n    backend: up\n    model: gpt-test\n    system_prompt: You add numbers.\n    mcp_servers: [demo]\n",
        up.url()
    );
    let gw = TestGateway::start(&yaml);
    let first = ok(
        &gw,
        &json!({"model": "calc", "input": "what is 2 + 3?", "max_output_tokens": 50,
        "temperature": 0.3, "text": {"format": {"type": "json_object"}}, "reasoning": {"effort": "low"},
        "include": ["reasoning.encrypted_content"]}),
    );
    // Structured output (json_object): a tool round's text ("Adding.") is not part of the
    // answer (issue 14), so no message item precedes the call.
    assert_eq!(item_types(&first), ["mcp_call", "message"]);
    let sent = &up.completions()[0].body;
    assert_eq!(sent["max_completion_tokens"], 50);
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    assert_eq!(sent["reasoning_effort"], "low");
    assert!(sent.get("include").is_none() && sent.get("store").is_none());

    // The Agents SDK way: the previous output appended to the next input.
    let mut input = vec![json!({"role": "user", "content": "what is 2 + 3?"})];
    input.extend(first["output"].as_array().unwrap().iter().cloned());
    input.push(json!({"role": "user", "content": "thanks"}));
    let r = post(
        &gw,
        &json!({"model": "calc", "input": input, "instructions": "Be kind."}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let msgs = up.completions()[2].body["messages"]
        .as_array()
        .unwrap()
        .clone();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    assert_eq!(
        msgs[0]["content"], "Be kind.",
        "instructions replace the assistant prompt"
    );
    assert_eq!(msgs[2]["content"], "");
    assert_eq!(msgs[2]["tool_calls"][0]["function"]["name"], "demo__add");
    assert_eq!(msgs[3]["tool_call_id"], msgs[2]["tool_calls"][0]["id"]);
    assert_eq!(msgs[3]["content"], "5");
}

#[test]
fn responses_store_evicts_oldest_first() {
    let gw = TestGateway::start(&format!(
        "{}responses:\n  store_max_entries: 2\n",
        aiproxy::demo::CONFIG_YAML
    ));
    let ids: Vec<String> = (0..3)
        .map(|i| {
            ok(
                &gw,
                &json!({"model": "demo", "input": format!("hello {i}")}),
            )["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        gw.get(&format!("/v1/responses/{}", ids[0])).status,
        404,
        "oldest evicted"
    );
    assert_eq!(gw.get(&format!("/v1/responses/{}", ids[1])).status, 200);
    assert_eq!(gw.get(&format!("/v1/responses/{}", ids[2])).status, 200);
    let r = post(
        &gw,
        &json!({"model": "demo", "input": "x", "previous_response_id": ids[0]}),
    );
    assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
}

#[test]
fn responses_store_limits_come_from_the_config_section() {
    // Too few bytes for any response: nothing is kept.
    let gw = TestGateway::start(&format!(
        "{}responses:\n  store_max_bytes: 1KiB\n",
        aiproxy::demo::CONFIG_YAML
    ));
    let id = ok(&gw, &json!({"model": "demo", "input": "x".repeat(2000)}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(gw.get(&format!("/v1/responses/{id}")).status, 404);
    // A short TTL: retrievable at once, gone after it.
    let gw = TestGateway::start(&format!(
        "{}responses:\n  store_ttl: 2s\n  store_max_entries: 10\n",
        aiproxy::demo::CONFIG_YAML
    ));
    let id = ok(&gw, &json!({"model": "demo", "input": "hi"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    assert_eq!(gw.get(&format!("/v1/responses/{id}")).status, 200);
    while gw.get(&format!("/v1/responses/{id}")).status == 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "expired too early"
    );
    // Strictly read: unknown keys and bad values are refused with their path.
    let bad = format!(
        "{}responses:\n  store_max_entries: -1\n  store_ttl: soon\n  stor_ttl: 1h\n",
        aiproxy::demo::CONFIG_YAML
    );
    let err = aiproxy::config::parse(&bad, "test", &crate::support::gateway::TestEnv::new())
        .unwrap_err()
        .to_string();
    for want in [
        "responses.store_max_entries",
        "responses.store_ttl",
        "responses.stor_ttl: unknown field",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
}

#[test]
fn responses_hidden_mcp_items_and_incomplete_and_json() {
    let yaml = aiproxy::demo::CONFIG_YAML.replace(
        "    mcp_servers: [demo]\n",
        "    mcp_servers: [demo]\n    responses_mcp_items: false\n",
    );
    let gw = TestGateway::start(&yaml);
    for stream in [false, true] {
        let r = post(
            &gw,
            &json!({"model": "demo", "input": "what is 2 + 3?", "stream": stream}),
        );
        let v = if stream {
            events(&r.text()).last().unwrap().1["response"].clone()
        } else {
            r.json()
        };
        assert_eq!(item_types(&v), ["message"], "{v}");
        assert_eq!(output_text(&v), "Let me use the add tool.\n\n2 + 3 = 5.");
    }
    let v = ok(
        &gw,
        &json!({"model": "demo", "input": "one two three four five", "max_output_tokens": 2}),
    );
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["output"][0]["status"], "incomplete");
    let r = post(
        &gw,
        &json!({"model": "demo", "input": "one two three", "max_output_tokens": 2, "stream": true}),
    );
    assert_eq!(events(&r.text()).last().unwrap().0, "response.incomplete");

    let schema = json!({"type": "object", "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["text", "n"], "additionalProperties": false});
    let v = ok(
        &gw,
        &json!({"model": "demo", "input": "say 7",
        "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": true}}}),
    );
    let parsed: Value = serde_json::from_str(&output_text(&v)).unwrap();
    assert_eq!(parsed["n"], 7);
    assert_eq!(v["text"]["format"]["type"], "json_schema");
}

#[test]
fn responses_refusals_are_clear_400s() {
    let gw = TestGateway::demo();
    for kind in [
        "web_search",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "image_generation",
        "mcp",
    ] {
        let r = post(
            &gw,
            &json!({"model": "demo", "input": "hi", "tools": [{"type": kind, "server_label": "x"}]}),
        );
        assert_eq!(r.status, 400, "{kind}");
        let e = &r.json()["error"];
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("'{kind}'")),
            "{e}"
        );
        assert_eq!(e["param"], "tools[0]");
        assert_eq!(e["type"], "invalid_request_error");
    }
    let cases = [
        (
            json!({"model": "demo", "input": "hi", "conversation": "conv_1"}),
            "conversation",
        ),
        (json!({"model": "demo"}), "input"),
        (json!({"input": "hi"}), "model"),
        (json!({"model": "demo", "input": 5}), "input"),
        (
            json!({"model": "demo", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0]",
        ),
        (
            json!({"model": "demo", "input": [{"role": "wizard", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "demo", "input": "hi", "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "demo", "input": "hi", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
        ),
    ];
    for (body, param) in cases {
        let r = post(&gw, &body);
        assert_eq!(r.status, 400, "{body} → {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{body}");
    }
    let r = post(&gw, &json!({"model": "nope", "input": "hi"}));
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    let r = request(gw.addr, "PUT", "/v1/responses", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(gw.get("/v1/responses/resp_unknown").status, 404);
    assert_eq!(gw.get("/v1/responses/..%2f..").status, 404);

    let r = post(
        &gw,
        &json!({"model": "demo", "input": "hi", "include": ["reasoning.encrypted_content", "message.output_text.logprobs"]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("X-Aiproxy-Ignored-Include"),
        Some("reasoning.encrypted_content,message.output_text.logprobs")
    );
    let metrics = gw.admin("GET", "/metrics", &[], b"").text();
    assert!(metrics.contains("route=\"responses\""), "{metrics}");
}

#[test]
fn responses_hostile_bodies_get_proper_answers() {
    let gw = TestGateway::demo();
    // Non-ASCII round trip.
    let text = "héllo 🌍 مرحبا \u{0} \u{202e}";
    let v = ok(&gw, &json!({"model": "demo", "input": text}));
    assert_eq!(output_text(&v), format!("You said: {text}"));
    // Not UTF-8, not JSON, truncated JSON, deep nesting.
    let bodies: [&[u8]; 4] = [
        b"\xff\xfe{}",
        b"model=demo",
        br#"{"model":"demo","input":"hi"#,
        &[b'['; 100_000],
    ];
    for body in bodies {
        let r = request(
            gw.addr,
            "POST",
            "/v1/responses",
            &[("Content-Type", "application/json")],
            body,
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["error"]["message"].is_string());
    }
    // Too big: 413 from the server's body limit.
    let huge = format!(r#"{{"model":"demo","input":"{}"}}"#, "a".repeat(5 << 20));
    let r = request(
        gw.addr,
        "POST",
        "/v1/responses",
        &[("Content-Type", "application/json")],
        huge.as_bytes(),
    );
    assert_eq!(r.status, 413);
    // Truncated body: the client promises more than it sends, then stops writing.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(
        b"POST /v1/responses HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"model\":",
    )
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let head = String::from_utf8_lossy(&raw);
    assert!(raw.is_empty() || head.starts_with("HTTP/1.1 400"), "{head}");
    // Endless chunked body: answered with 413 once over the limit.
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"POST /v1/responses HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
    for _ in 0..200 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    // Still serving.
    assert_eq!(
        post(&gw, &json!({"model": "demo", "input": "hi"})).status,
        200
    );
}

#[test]
fn responses_are_private_to_the_key_that_made_them() {
    let yaml = format!(
        "{}proxy_api_keys: [key-a, key-b]\n",
        aiproxy::demo::CONFIG_YAML
    );
    let gw = TestGateway::start(&yaml);
    let body = json!({"model": "demo", "input": "hi"}).to_string();
    let auth = |k: &str| format!("Bearer {k}");
    let a = auth("key-a");
    let b = auth("key-b");
    fn hdr(v: &str) -> Vec<(&str, &str)> {
        vec![("Content-Type", "application/json"), ("Authorization", v)]
    }
    let r = request(
        gw.addr,
        "POST",
        "/v1/responses",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let r = request(gw.addr, "POST", "/v1/responses", &hdr(&a), body.as_bytes());
    assert_eq!(r.status, 200);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/responses/{id}");
    assert_eq!(request(gw.addr, "GET", &path, &hdr(&a), b"").status, 200);
    assert_eq!(request(gw.addr, "GET", &path, &hdr(&b), b"").status, 404);
    assert_eq!(request(gw.addr, "DELETE", &path, &hdr(&b), b"").status, 404);
    let cont = json!({"model": "demo", "input": "x", "previous_response_id": id}).to_string();
    assert_eq!(
        request(gw.addr, "POST", "/v1/responses", &hdr(&b), cont.as_bytes()).status,
        400
    );
    assert_eq!(
        request(gw.addr, "POST", "/v1/responses", &hdr(&a), cont.as_bytes()).status,
        200
    );
}

fn upstream_gateway(up: &FakeOpenAi) -> TestGateway {
    let yaml = format!(
        "mcp_servers:\n  demo:\n    command: ${{AIPROXY_EXE}}\n    args: [demo-mcp]\nbackends:\n  up:\n    kind: openai\n    base_url: {}\n    api_key: sk-up\nassistants:\n  - name: calc\n    backend: up\n    model: gpt-test\n    mcp_servers: [demo]\n",
        up.url()
    );
    TestGateway::start(&yaml)
}

#[test]
fn responses_failures_before_and_after_the_first_byte() {
    let up = FakeOpenAi::start();
    let gw = upstream_gateway(&up);
    // Before anything was written: a real status, OpenAI-shaped, in both modes.
    for stream in [false, true] {
        up.push(Reply::error(429, "slow down"));
        let r = post(
            &gw,
            &json!({"model": "calc", "input": "hi", "stream": stream}),
        );
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.json()["error"]["message"].is_string());
    }
    // After the first event: an `error` event, then `response.failed`, then the end.
    up.push(Reply::text("one two three four five").close_after(2));
    let r = post(
        &gw,
        &json!({"model": "calc", "input": "hi", "stream": true}),
    );
    assert_eq!(r.status, 200);
    let ev = events(&r.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[names.len() - 2..],
        ["error", "response.failed"],
        "{names:?}"
    );
    for (i, (_, d)) in ev.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
    }
    let (_, err) = &ev[ev.len() - 2];
    assert!(err["message"].as_str().unwrap().len() > 3, "{err}");
    let failed = &ev.last().unwrap().1["response"];
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"]["message"].is_string());
    assert_eq!(
        failed["output"][0]["status"], "incomplete",
        "the cut message"
    );
}

#[test]
fn responses_failed_tool_call_is_a_failed_mcp_call_item() {
    let up = FakeOpenAi::start();
    let gw = upstream_gateway(&up);
    for stream in [false, true] {
        up.push(Reply::tool_call("demo__add", "{not json"));
        up.push(Reply::text("Sorry."));
        let r = post(
            &gw,
            &json!({"model": "calc", "input": "add", "stream": stream}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = if stream {
            let ev = events(&r.text());
            assert!(ev.iter().any(|(n, _)| n == "response.mcp_call.failed"));
            ev.last().unwrap().1["response"].clone()
        } else {
            r.json()
        };
        assert_eq!(item_types(&v), ["mcp_call", "message"], "{v}");
        let call = &v["output"][0];
        assert_eq!(
            (call["server_label"].as_str(), call["name"].as_str()),
            (Some("demo"), Some("add"))
        );
        assert_eq!(call["status"], "failed");
        assert_eq!(call["output"], Value::Null);
        assert!(
            call["error"].as_str().unwrap().contains("invalid JSON"),
            "{call}"
        );
        assert_eq!(output_text(&v), "Sorry.");
    }
}

#[test]
fn responses_stream_flushes_deltas_and_stops_when_the_client_leaves() {
    use std::io::{BufRead, BufReader};
    use std::time::Instant;
    let up = FakeOpenAi::start();
    let words: Vec<String> = (0..100).map(|i| format!("w{i} ")).collect();
    up.push(Reply::deltas(&words).chunk_delay(Duration::from_millis(100)));
    let gw = upstream_gateway(&up);
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = json!({"model": "calc", "input": "talk", "stream": true}).to_string();
    let head = format!(
        "POST /v1/responses HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    (&s).write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut times = Vec::new();
    let mut line = String::new();
    while times.len() < 3 {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        if line.starts_with("event: response.output_text.delta") {
            times.push(Instant::now());
        }
    }
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(60),
            "deltas were batched"
        );
    }
    assert_eq!(up.open_connections(), 1);
    let sock = reader.into_inner();
    sock.shutdown(std::net::Shutdown::Both).unwrap();
    drop(sock);
    assert!(
        up.wait_open_connections(0, Duration::from_secs(5)),
        "the upstream connection is closed when the client leaves"
    );
}

#[test]
fn responses_stream_deltas_that_arrive_together_leave_together() {
    let up = FakeOpenAi::start();
    up.push(Reply::deltas(&["one ", "two ", "three ", "four"]).in_one_write());
    let gw = upstream_gateway(&up);
    let body = json!({"model": "calc", "input": "count", "stream": true});
    let mut client = SseClient::open_at(gw.addr, "/v1/responses", &body);
    assert_eq!(client.status, 200);
    let mut deltas = Vec::new();
    let mut chunk_of_delta = Vec::new();
    let mut chunk_of_end = Vec::new();
    let mut last = Value::Null;
    while let Some((block, _)) = client.next_block() {
        let Some((kind, data)) = block
            .strip_prefix("event: ")
            .and_then(|b| b.split_once("\ndata: "))
        else {
            continue;
        };
        let v: Value = serde_json::from_str(data).unwrap();
        if kind == "response.output_text.delta" {
            deltas.push(v["delta"].as_str().unwrap().to_string());
            chunk_of_delta.push(client.chunks_read);
        } else if !deltas.is_empty() {
            chunk_of_end.push((kind.to_string(), client.chunks_read));
        }
        last = v;
    }
    assert_eq!(deltas.concat(), "one two three four");
    assert!(
        chunk_of_delta.windows(2).all(|w| w[0] == w[1]),
        "one write for the four deltas: {chunk_of_delta:?}"
    );
    // The events that end the stream (`output_text.done` … `response.completed`) leave
    // together, with the end of the body.
    assert_eq!(chunk_of_end.len(), 4, "{chunk_of_end:?}");
    assert!(
        chunk_of_end.windows(2).all(|w| w[0].1 == w[1].1),
        "one write for the end: {chunk_of_end:?}"
    );
    assert_eq!(last["type"], "response.completed", "{last}");
    assert_eq!(output_text(&last["response"]), "one two three four");
}

#[test]
fn responses_item_references_resolve_from_the_store() {
    let gw = TestGateway::demo();
    // A turn with an MCP round: message, mcp_call, message.
    let first = ok(&gw, &json!({"model": "demo", "input": "what is 2 + 3?"}));
    let out = first["output"].as_array().unwrap();
    let ids: Vec<&str> = out.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(out[1]["type"], "mcp_call");
    // The Vercel AI SDK's shape: the earlier output as references (the mcp_call twice, as a
    // call and as its result), then the new question; store: false on the follow-up.
    let mut input = vec![json!({"role": "user", "content": "what is 2 + 3?"})];
    for id in [ids[0], ids[1], ids[1], ids[2]] {
        input.push(json!({"type": "item_reference", "id": id}));
    }
    input.push(json!({"role": "user", "content": "echo done"}));
    let second = ok(
        &gw,
        &json!({"model": "demo", "input": input, "store": false}),
    );
    assert_eq!(
        second["output"].as_array().unwrap().last().unwrap()["content"][0]["text"],
        "The echo tool returned: done"
    );
    // An unknown id is a 400 that names the item (other callers' items are unknown too:
    // store::tests::finds_items_by_id_for_their_owner_only).
    let r = post(
        &gw,
        &json!({"model": "demo", "input": [{"type": "item_reference", "id": "msg_nope"}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["param"], "input[0]");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("msg_nope"),
        "{e}"
    );
    let r = post(
        &gw,
        &json!({"model": "demo", "input": [{"type": "item_reference", "id": ""}]}),
    );
    assert_eq!(r.status, 400);
}
