//! The loop over a scripted backend and a scripted tool executor.

use super::*;
use crate::backend::{Error, Turn};
use crate::tools::result::ToolOutput;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::VecDeque;

/// A backend that plays scripted turns and records what it was asked.
struct Scripted {
    turns: Mutex<VecDeque<Result<Turn, Error>>>,
    seen: Mutex<Vec<(usize, usize, bool)>>, // (messages, tools offered, final_round)
    last_messages: Mutex<Vec<Message>>,
}

impl Scripted {
    fn new(turns: Vec<Result<Turn, Error>>) -> Self {
        Scripted {
            turns: Mutex::new(turns.into()),
            seen: Mutex::new(vec![]),
            last_messages: Mutex::new(vec![]),
        }
    }
}

impl Backend for Scripted {
    fn turn(&self, req: &TurnRequest<'_>, sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        self.seen
            .lock()
            .push((req.messages.len(), req.tools.len(), req.final_round));
        *self.last_messages.lock() = req.messages.to_vec();
        let turn = self
            .turns
            .lock()
            .pop_front()
            .unwrap_or_else(|| Ok(text("(script ended)")))?;
        if req.stream {
            for w in turn.content.split_inclusive(' ') {
                sink.text(w)?;
            }
        }
        Ok(turn)
    }
}

fn text(s: &str) -> Turn {
    Turn {
        content: s.into(),
        tool_calls: vec![],
        finish_reason: FinishReason::Stop,
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: 2,
            ..Default::default()
        },
        provider_state: None,
    }
}

fn calls(lead: &str, calls: &[(&str, &str)]) -> Turn {
    Turn {
        tool_calls: calls
            .iter()
            .enumerate()
            .map(|(i, (n, a))| ToolCall::new(format!("call_{i}"), *n, *a))
            .collect(),
        finish_reason: FinishReason::ToolCalls,
        ..text(lead)
    }
}

/// Tools `t__add` (sums a and b), `t__fail` (always errors) and `t__sleep` (sleeps ms).
struct FakeTools {
    defs: Vec<Tool>,
    /// The thread of each `call_all`.
    threads: Mutex<Vec<std::thread::ThreadId>>,
}

impl FakeTools {
    fn new() -> Self {
        let defs = ["t__add", "t__fail", "t__sleep"]
            .iter()
            .map(|n| {
                serde_json::from_value(json!({"type":"function","function":{"name":n}})).unwrap()
            })
            .collect();
        FakeTools {
            defs,
            threads: Mutex::default(),
        }
    }
}

impl ToolExecutor for FakeTools {
    fn definitions(&self) -> &[Tool] {
        &self.defs
    }
    fn call_all(&self, calls: &[ToolCall], cancel: &Cancel) -> Vec<Message> {
        self.threads.lock().push(std::thread::current().id());
        // As `ToolSet`: one call runs on the calling thread, several on threads of their own.
        if let [one] = calls {
            return vec![fake_call(one, cancel)];
        }
        std::thread::scope(|s| {
            let hs: Vec<_> = calls
                .iter()
                .map(|c| s.spawn(move || fake_call(c, cancel)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }
}

fn fake_call(c: &ToolCall, cancel: &Cancel) -> Message {
    let a: Value = serde_json::from_str(&c.function.arguments).unwrap_or(json!({}));
    let out = match c.function.name.as_str() {
        "t__add" => ToolOutput {
            text: (a["a"].as_i64().unwrap_or(0) + a["b"].as_i64().unwrap_or(0)).to_string(),
            ..Default::default()
        },
        "t__sleep" => {
            // Waits as an MCP call does: in slices, calling back between them, until done or
            // cancelled.
            let until = Instant::now() + Duration::from_millis(a["ms"].as_u64().unwrap_or(0));
            while Instant::now() < until && !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(20));
                crate::mcp::tick_caller();
            }
            ToolOutput {
                text: if cancel.is_cancelled() {
                    "cancelled"
                } else {
                    "slept"
                }
                .into(),
                ..Default::default()
            }
        }
        "t__fail" => ToolOutput::error("it broke"),
        other => ToolOutput::error(format!("unknown tool '{other}'")),
    };
    out.into_message(&c.id)
}

#[derive(Default)]
struct Recorder {
    text: String,
    tool_rounds: usize,
    /// `waiting` calls (one per second while tools run).
    waits: usize,
    /// The client is gone from this `waiting` call on.
    gone_at_wait: Option<usize>,
}

impl LoopSink for Recorder {
    fn text(&mut self, d: &str) -> Result<(), Cancelled> {
        self.text.push_str(d);
        Ok(())
    }
    fn tool_round(&mut self, _c: &[ToolCall]) -> Result<(), Cancelled> {
        self.tool_rounds += 1;
        Ok(())
    }
    fn waiting(&mut self) -> Result<(), Cancelled> {
        self.waits += 1;
        match self.gone_at_wait {
            Some(n) if self.waits >= n => Err(Cancelled),
            _ => Ok(()),
        }
    }
}

fn assistant(max: u32) -> AssistantConfig {
    AssistantConfig {
        name: "a".into(),
        backend: "b".into(),
        model: "m".into(),
        description: None,
        system_prompt: Some("Be brief.".into()),
        mcp_servers: vec![],
        max_tool_iterations: max,
        max_tool_calls_per_turn: 128,
        temperature: Some(0.2),
        top_p: None,
        max_tokens: Some(100),
        extra_body: Map::new(),
        allowed_tools: vec![],
        denied_tools: vec![],
        responses_mcp_items: true,
        vision: false,
    }
}

fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

fn run(backend: &Scripted, max: u32, body: Value) -> (Result<Outcome, LoopError>, Recorder) {
    run_with(backend, &FakeTools::new(), max, body)
}

fn run_with(
    backend: &Scripted,
    tools: &FakeTools,
    max: u32,
    body: Value,
) -> (Result<Outcome, LoopError>, Recorder) {
    let rec = Recorder::default();
    run_until(backend, tools, max, body, Duration::from_secs(30), rec)
}

fn run_until(
    backend: &Scripted,
    tools: &FakeTools,
    max: u32,
    body: Value,
    timeout: Duration,
    mut rec: Recorder,
) -> (Result<Outcome, LoopError>, Recorder) {
    let a = assistant(max);
    let prepared = prepare(request(body), &a).unwrap();
    let cancel = Cancel::new();
    let r = Run {
        assistant: &a,
        backend,
        tools,
        cancel: &cancel,
        deadline: Instant::now() + timeout,
    };
    (r.run(&prepared, &mut rec), rec)
}

fn user(text: &str, stream: bool) -> Value {
    json!({"model":"a","stream":stream,"messages":[{"role":"user","content":text}]})
}

#[test]
fn tool_round_then_answer_in_both_modes_alike() {
    for stream in [false, true] {
        let b = Scripted::new(vec![
            Ok(calls("Let me add.", &[("t__add", r#"{"a":2,"b":3}"#)])),
            Ok(text("2 + 3 = 5.")),
        ]);
        let (out, rec) = run(&b, 8, user("what is 2 + 3?", stream));
        let out = out.unwrap();
        assert_eq!(out.content, "Let me add.\n\n2 + 3 = 5.");
        assert_eq!(out.finish_reason, FinishReason::Stop);
        assert_eq!(out.rounds, 2);
        assert_eq!(out.tool_calls, 1);
        assert_eq!(out.usage.prompt_tokens, 20, "usage summed over rounds");
        assert_eq!(out.usage.completion_tokens, 4);
        if stream {
            assert_eq!(
                rec.text, out.content,
                "streamed text equals the non-stream content"
            );
        }
        assert_eq!(rec.tool_rounds, 1);
        // Round 2 saw: system, user, assistant(tool_calls), tool result.
        let msgs = b.last_messages.lock().clone();
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].role, Role::System);
        assert_eq!(
            msgs[2].tool_calls.as_ref().unwrap()[0].function.name,
            "t__add"
        );
        assert_eq!(msgs[3].text_content(), "5");
        assert_eq!(msgs[3].tool_call_id.as_deref(), Some("call_0"));
    }
}

#[test]
fn one_call_rounds_run_on_the_loops_thread_and_larger_rounds_share_one_runner() {
    let two = [
        ("t__add", r#"{"a":2,"b":2}"#),
        ("t__add", r#"{"a":3,"b":3}"#),
    ];
    let b = Scripted::new(vec![
        Ok(calls("", &[("t__add", r#"{"a":1,"b":1}"#)])),
        Ok(calls("", &two)),
        Ok(calls("", &two)),
        Ok(calls("", &[("t__add", r#"{"a":4,"b":4}"#)])),
        Ok(text("done")),
    ]);
    let tools = FakeTools::new();
    let (out, rec) = run_with(&b, &tools, 8, user("add", false));
    assert_eq!(out.unwrap().tool_calls, 6);
    assert_eq!(rec.tool_rounds, 4);
    let threads = tools.threads.lock().clone();
    let me = std::thread::current().id();
    assert_eq!(threads[0], me, "a lone call runs on the loop's thread");
    assert_eq!(threads[3], me);
    assert_ne!(threads[1], me, "several calls run beside the loop");
    assert_eq!(threads[1], threads[2], "one runner thread for the request");
}

/// A lone call runs on the loop's thread, and its waits call back: the sink is kept alive
/// (about once a second) and the deadline ends the call (504), as with the runner thread.
#[test]
fn a_long_lone_call_keeps_the_sink_alive_and_ends_at_the_deadline() {
    let b = Scripted::new(vec![
        Ok(calls("", &[("t__sleep", r#"{"ms":20000}"#)])),
        Ok(text("never")),
    ]);
    let t = Instant::now();
    let (out, rec) = run_until(
        &b,
        &FakeTools::new(),
        8,
        user("wait", true),
        Duration::from_millis(2500),
        Recorder::default(),
    );
    assert_eq!(out.unwrap_err(), LoopError::Deadline);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(rec.waits >= 2, "{} keep-alive ticks", rec.waits);
}

/// A client that leaves during a lone call cancels it at the next tick.
#[test]
fn a_client_leaving_during_a_lone_call_cancels_it() {
    let b = Scripted::new(vec![
        Ok(calls("", &[("t__sleep", r#"{"ms":20000}"#)])),
        Ok(text("never")),
    ]);
    let gone = Recorder {
        gone_at_wait: Some(1),
        ..Recorder::default()
    };
    let t = Instant::now();
    let (out, _) = run_until(
        &b,
        &FakeTools::new(),
        8,
        user("wait", true),
        Duration::from_secs(30),
        gone,
    );
    assert_eq!(out.unwrap_err(), LoopError::Cancelled);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn tool_errors_reach_the_model_and_the_loop_goes_on() {
    let b = Scripted::new(vec![
        Ok(calls("", &[("t__fail", "{}"), ("t__nope", "{}")])),
        Ok(text("Sorry, that failed.")),
    ]);
    let (out, _) = run(&b, 8, user("do it", false));
    assert_eq!(out.unwrap().content, "Sorry, that failed.");
    let msgs = b.last_messages.lock().clone();
    assert_eq!(msgs[3].text_content(), "[tool error] it broke");
    assert!(msgs[3].tool_error);
    assert_eq!(
        msgs[4].text_content(),
        "[tool error] unknown tool 't__nope'"
    );
}

#[test]
fn iteration_cap_ends_with_a_round_that_cannot_call_tools() {
    let b = Scripted::new(vec![
        Ok(calls("", &[("t__add", r#"{"a":1,"b":1}"#)])),
        Ok(calls("", &[("t__add", r#"{"a":1,"b":1}"#)])),
        Ok(calls(
            "Still want tools.",
            &[("t__add", r#"{"a":1,"b":1}"#)],
        )),
    ]);
    let (out, _) = run(&b, 2, user("loop", false));
    let out = out.unwrap();
    let seen = b.seen.lock().clone();
    assert_eq!(
        seen.iter().map(|s| s.2).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(out.rounds, 3);
    assert_eq!(out.tool_calls, 2, "the final round's calls are not run");
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.content, "Still want tools.");
}

#[test]
fn zero_iterations_means_one_round_without_tools() {
    let b = Scripted::new(vec![Ok(text("plain"))]);
    let (out, _) = run(&b, 0, user("hi", true));
    assert_eq!(out.unwrap().content, "plain");
    assert!(b.seen.lock()[0].2);
}

#[test]
fn client_tools_go_back_to_the_client() {
    let b = Scripted::new(vec![Ok(calls(
        "",
        &[("get_weather", r#"{"city":"Paris"}"#)],
    ))]);
    let body = json!({"model":"a","messages":[{"role":"user","content":"weather?"}],
        "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]});
    let (out, rec) = run(&b, 8, body);
    let out = out.unwrap();
    assert_eq!(out.finish_reason, FinishReason::ToolCalls);
    assert_eq!(out.client_tool_calls[0].function.name, "get_weather");
    assert_eq!(out.tool_calls, 0);
    assert_eq!(rec.tool_rounds, 0);
    assert_eq!(b.seen.lock()[0].1, 4, "3 MCP tools + 1 client tool offered");
}

#[test]
fn parallel_calls_run_concurrently_and_keep_order() {
    let b = Scripted::new(vec![
        Ok(calls(
            "",
            &[
                ("t__sleep", r#"{"ms":300}"#),
                ("t__add", r#"{"a":1,"b":2}"#),
                ("t__sleep", r#"{"ms":300}"#),
            ],
        )),
        Ok(text("done")),
    ]);
    let t = Instant::now();
    let (out, _) = run(&b, 8, user("go", false));
    assert!(out.is_ok());
    assert!(
        t.elapsed() < Duration::from_millis(550),
        "took {:?}",
        t.elapsed()
    );
    let msgs = b.last_messages.lock().clone();
    let results: Vec<String> = msgs[3..].iter().map(|m| m.text_content()).collect();
    assert_eq!(results, ["slept", "3", "slept"]);
}

#[test]
fn backend_errors_stop_the_loop() {
    let b = Scripted::new(vec![Err(Error::Timeout)]);
    let (out, _) = run(&b, 8, user("hi", false));
    assert_eq!(out.unwrap_err(), LoopError::Backend(Error::Timeout));
}

#[test]
fn prepare_merges_parameters_and_system_prompt() {
    let a = assistant(8);
    let p = prepare(
        request(json!({"model":"a","messages":[{"role":"user","content":"x"}],
            "temperature":0.9,"seed":7,"top_p":null,"stream":true,"stream_options":{"include_usage":true}})),
        &a,
    )
    .unwrap();
    assert_eq!(
        p.params["temperature"],
        json!(0.9),
        "client overrides the assistant"
    );
    assert_eq!(p.params["max_tokens"], json!(100), "assistant default kept");
    assert_eq!(
        p.params["seed"],
        json!(7),
        "unknown parameters pass through"
    );
    assert!(!p.params.contains_key("top_p"), "nulls are not sent");
    assert!(!p.params.contains_key("stream"));
    assert!(p.stream && p.include_usage);
    assert_eq!(p.messages[0].text_content(), "Be brief.");

    let p = prepare(
        request(json!({"model":"a","max_completion_tokens":5,"messages":[{"role":"system","content":"Mine."},{"role":"user","content":"x"}]})),
        &a,
    )
    .unwrap();
    assert_eq!(
        p.messages.len(),
        2,
        "a client system message replaces the prompt"
    );
    assert!(
        !p.params.contains_key("max_tokens"),
        "max_completion_tokens wins"
    );

    let e = prepare(
        request(json!({"model":"a","n":2,"messages":[{"role":"user","content":"x"}]})),
        &a,
    );
    assert_eq!(e.err().map(|e| e.status), Some(400));
    let e = prepare(request(json!({"model":"a","messages":[]})), &a);
    assert_eq!(e.err().map(|e| e.status), Some(400));
}
