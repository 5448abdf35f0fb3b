//! The tool loop of one chat completion (SPEC §5), over a `dyn Backend`, a [`ToolSet`] and a
//! [`LoopSink`]. No HTTP in here: the route prepares the request, the sink writes the stream
//! (or nothing, for non-streaming requests).
//!
//! Runs on the worker thread that owns the request. Each round calls the backend once; tool
//! calls of a round run concurrently on scoped threads while this thread waits on a channel
//! with a timeout and pokes the sink about once a second (keep-alives, client-gone checks).
//! Up to `max_tool_iterations` rounds offer tools; the round after that cannot call tools.
//! Text of every round reaches the client in both modes, rounds joined by a blank line.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::api::openai::{
    ChatRequest, Content, FinishReason, Message, Role, Tool, ToolCall, Usage,
};
use crate::backend::{self, Backend, Cancelled, TurnRequest, TurnSink};
use crate::cancel::Cancel;
use crate::config::AssistantConfig;
use crate::error::ApiError;

/// Request fields the loop interprets itself; everything else passes through to the upstream.
const INTERPRETED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "n",
];

/// How often the waiting thread pokes the sink while tools run.
const WAIT_TICK: Duration = Duration::from_secs(1);

/// A validated request, ready for the loop.
pub struct Prepared {
    pub messages: Vec<Message>,
    pub params: Map<String, Value>,
    pub client_tools: Vec<Tool>,
    pub tool_choice: Option<Value>,
    pub stream: bool,
    pub include_usage: bool,
}

/// Check a chat request against an assistant and merge parameters: assistant defaults first,
/// then every non-null client value (SPEC §4).
pub fn prepare(req: ChatRequest, assistant: &AssistantConfig) -> Result<Prepared, ApiError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ApiError::bad_request("n > 1 is not supported").with_param("n"));
    }
    if req.messages.is_empty() {
        return Err(
            ApiError::bad_request("'messages' must contain at least one message")
                .with_param("messages"),
        );
    }
    let client_tools = req.tools.unwrap_or_default();
    for (i, t) in client_tools.iter().enumerate() {
        if t.kind != "function" || t.function.name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "tools[{i}] must be a function with a name"
            ))
            .with_param(format!("tools[{i}]")));
        }
    }

    let mut params = Map::new();
    let client_sets_completion_tokens = req
        .rest
        .get("max_completion_tokens")
        .is_some_and(|v| !v.is_null());
    if let Some(t) = assistant.temperature {
        params.insert("temperature".into(), Value::from(t));
    }
    if let Some(p) = assistant.top_p {
        params.insert("top_p".into(), Value::from(p));
    }
    if let (Some(m), false) = (assistant.max_tokens, client_sets_completion_tokens) {
        params.insert("max_tokens".into(), Value::from(m));
    }
    for (k, v) in req.rest {
        if !v.is_null() && !INTERPRETED.contains(&k.as_str()) {
            params.insert(k, v);
        }
    }

    let mut messages = req.messages;
    let has_system_first = matches!(
        messages.first().map(|m| m.role),
        Some(Role::System | Role::Developer)
    );
    if let (Some(prompt), false) = (&assistant.system_prompt, has_system_first) {
        messages.insert(0, Message::text(Role::System, prompt.clone()));
    }

    Ok(Prepared {
        messages,
        params,
        client_tools,
        tool_choice: req.tool_choice,
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// What the loop tells the response writer.
pub trait LoopSink {
    /// A text delta for the client (streaming only; non-streaming sinks may ignore it).
    fn text(&mut self, delta: &str) -> Result<(), Cancelled>;
    /// A tool round is about to run.
    fn tool_round(&mut self, calls: &[ToolCall]) -> Result<(), Cancelled>;
    /// Called about once a second while tools run.
    fn waiting(&mut self) -> Result<(), Cancelled>;
}

/// The result of the whole loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Text of every round, joined by blank lines.
    pub content: String,
    /// Calls of client-defined tools, returned to the client (finish reason `tool_calls`).
    pub client_tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub rounds: u32,
    /// MCP tool calls executed.
    pub tool_calls: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoopError {
    Backend(backend::Error),
    /// The request ran past its `request_timeout`.
    Deadline,
    /// The client went away.
    Cancelled,
}

impl From<&LoopError> for ApiError {
    fn from(e: &LoopError) -> Self {
        match e {
            LoopError::Backend(b) => ApiError::from(b),
            LoopError::Deadline => ApiError::new(504, "timeout_error", "request timed out"),
            LoopError::Cancelled => {
                ApiError::new(499, "client_closed_request", "client disconnected")
            }
        }
    }
}

/// The tools a run may call (the request's `ToolSet`; scripted executors in tests).
pub trait ToolExecutor: Sync {
    /// Definitions offered to the model, under their exposed names.
    fn definitions(&self) -> &[Tool];
    /// Run the calls (concurrently where possible); one tool message per call, in order.
    fn call_all(&self, calls: &[ToolCall], cancel: &Cancel) -> Vec<Message>;
}

pub struct Run<'a> {
    pub assistant: &'a AssistantConfig,
    pub backend: &'a dyn Backend,
    pub tools: &'a dyn ToolExecutor,
    pub cancel: &'a Cancel,
    pub deadline: Instant,
}

impl Run<'_> {
    pub fn run(&self, prepared: &Prepared, sink: &mut dyn LoopSink) -> Result<Outcome, LoopError> {
        let mut messages = prepared.messages.clone();
        let offered: Vec<Tool> = self
            .tools
            .definitions()
            .iter()
            .chain(&prepared.client_tools)
            .cloned()
            .collect();
        let max = self.assistant.max_tool_iterations;
        let mut out = Outcome {
            content: String::new(),
            client_tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            rounds: 0,
            tool_calls: 0,
        };
        for round in 0..=max {
            self.check()?;
            let final_round = round == max || offered.is_empty();
            let request = TurnRequest {
                model: &self.assistant.model,
                messages: &messages,
                tools: &offered,
                tool_choice: prepared.tool_choice.as_ref(),
                final_round,
                params: &prepared.params,
                extra_body: &self.assistant.extra_body,
                stream: prepared.stream,
            };
            let mut round_sink = RoundSink {
                sink: &mut *sink,
                separate: !out.content.is_empty(),
                wrote: false,
            };
            let turn = self
                .backend
                .turn(&request, &mut round_sink)
                .map_err(|e| match e {
                    backend::Error::Cancelled => LoopError::Cancelled,
                    other => LoopError::Backend(other),
                })?;
            out.rounds += 1;
            out.usage.add(&turn.usage);
            if !turn.content.is_empty() {
                if !out.content.is_empty() {
                    out.content.push_str("\n\n");
                }
                out.content.push_str(&turn.content);
            }
            if turn.tool_calls.is_empty() || final_round {
                // On the final round tools were not offered; a model that calls one anyway is
                // answered with what it said.
                out.finish_reason = match turn.finish_reason {
                    FinishReason::ToolCalls => FinishReason::Stop,
                    other => other,
                };
                return Ok(out);
            }
            let client_calls: Vec<ToolCall> = turn
                .tool_calls
                .iter()
                .filter(|c| {
                    prepared
                        .client_tools
                        .iter()
                        .any(|t| t.function.name == c.function.name)
                })
                .cloned()
                .collect();
            if !client_calls.is_empty() {
                // The client runs its own tools and continues the conversation with their
                // results; MCP calls of the same turn are dropped (the model can ask again).
                out.client_tool_calls = client_calls;
                out.finish_reason = FinishReason::ToolCalls;
                return Ok(out);
            }

            sink.tool_round(&turn.tool_calls)
                .map_err(|_| self.cancelled())?;
            let mut assistant_msg = Message::new(
                Role::Assistant,
                (!turn.content.is_empty()).then(|| Content::Text(turn.content.clone())),
            );
            assistant_msg.tool_calls = Some(turn.tool_calls.clone());
            assistant_msg.provider_state = turn.provider_state.clone();
            messages.push(assistant_msg);
            out.tool_calls += turn.tool_calls.len() as u32;
            let results = self.run_tools(&turn.tool_calls, sink)?;
            messages.extend(results);
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), LoopError> {
        if self.cancel.is_cancelled() {
            return Err(LoopError::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(LoopError::Deadline);
        }
        Ok(())
    }

    fn cancelled(&self) -> LoopError {
        self.cancel.cancel();
        LoopError::Cancelled
    }

    /// Run the tools on a helper thread while this one keeps the sink alive.
    fn run_tools(
        &self,
        calls: &[ToolCall],
        sink: &mut dyn LoopSink,
    ) -> Result<Vec<Message>, LoopError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let tools = self.tools;
        let cancel = self.cancel;
        std::thread::scope(|s| {
            s.spawn(move || {
                // The receiver outlives this scope's threads, so the send cannot fail.
                let _ = tx.send(tools.call_all(calls, cancel));
            });
            loop {
                match rx.recv_timeout(WAIT_TICK) {
                    Ok(results) => return Ok(results),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if sink.waiting().is_err() {
                            self.cancel.cancel();
                        }
                        if Instant::now() >= self.deadline {
                            self.cancel.cancel();
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        return Err(LoopError::Backend(backend::Error::Protocol(
                            "tool runner failed".into(),
                        )));
                    }
                }
            }
        })
        .and_then(|results| {
            self.check()?;
            Ok(results)
        })
    }
}

/// Passes one round's deltas to the loop sink, putting a blank line between rounds' text.
struct RoundSink<'a> {
    sink: &'a mut dyn LoopSink,
    separate: bool,
    wrote: bool,
}

impl TurnSink for RoundSink<'_> {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        if delta.is_empty() {
            return Ok(());
        }
        if self.separate && !self.wrote {
            self.sink.text("\n\n")?;
        }
        self.wrote = true;
        self.sink.text(delta)
    }

    fn idle(&mut self) -> Result<(), Cancelled> {
        self.sink.waiting()
    }
}

/// A sink for non-streaming requests: it only checks that the client is still there.
pub struct Collect<F: FnMut() -> bool> {
    pub client_gone: F,
}

impl<F: FnMut() -> bool> LoopSink for Collect<F> {
    fn text(&mut self, _delta: &str) -> Result<(), Cancelled> {
        Ok(())
    }

    fn tool_round(&mut self, _calls: &[ToolCall]) -> Result<(), Cancelled> {
        self.waiting()
    }

    fn waiting(&mut self) -> Result<(), Cancelled> {
        if (self.client_gone)() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
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
    }

    impl FakeTools {
        fn new() -> Self {
            let defs = ["t__add", "t__fail", "t__sleep"]
                .iter()
                .map(|n| {
                    serde_json::from_value(json!({"type":"function","function":{"name":n}}))
                        .unwrap()
                })
                .collect();
            FakeTools { defs }
        }
    }

    impl ToolExecutor for FakeTools {
        fn definitions(&self) -> &[Tool] {
            &self.defs
        }
        fn call_all(&self, calls: &[ToolCall], _cancel: &Cancel) -> Vec<Message> {
            std::thread::scope(|s| {
                let hs: Vec<_> = calls
                    .iter()
                    .map(|c| {
                        s.spawn(move || {
                            let a: Value =
                                serde_json::from_str(&c.function.arguments).unwrap_or(json!({}));
                            let out = match c.function.name.as_str() {
                                "t__add" => ToolOutput {
                                    text: (a["a"].as_i64().unwrap_or(0)
                                        + a["b"].as_i64().unwrap_or(0))
                                    .to_string(),
                                    ..Default::default()
                                },
                                "t__sleep" => {
                                    std::thread::sleep(Duration::from_millis(
                                        a["ms"].as_u64().unwrap_or(0),
                                    ));
                                    ToolOutput {
                                        text: "slept".into(),
                                        ..Default::default()
                                    }
                                }
                                "t__fail" => ToolOutput::error("it broke"),
                                other => ToolOutput::error(format!("unknown tool '{other}'")),
                            };
                            out.into_message(&c.id)
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            })
        }
    }

    #[derive(Default)]
    struct Recorder {
        text: String,
        tool_rounds: usize,
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
            Ok(())
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
            temperature: Some(0.2),
            top_p: None,
            max_tokens: Some(100),
            extra_body: Map::new(),
            allowed_tools: vec![],
            denied_tools: vec![],
        }
    }

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    fn run(backend: &Scripted, max: u32, body: Value) -> (Result<Outcome, LoopError>, Recorder) {
        let a = assistant(max);
        let prepared = prepare(request(body), &a).unwrap();
        let tools = FakeTools::new();
        let cancel = Cancel::new();
        let r = Run {
            assistant: &a,
            backend,
            tools: &tools,
            cancel: &cancel,
            deadline: Instant::now() + Duration::from_secs(30),
        };
        let mut rec = Recorder::default();
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
}
