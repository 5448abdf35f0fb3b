//! The tool loop of one chat completion (docs/agent-loop.md), over a `dyn Backend`, a [`ToolSet`](crate::tools::ToolSet) and a
//! [`LoopSink`]. No HTTP in here: the route prepares the request, the sink writes the stream
//! (or nothing, for non-streaming requests).
//!
//! Runs on the worker thread that owns the request. Each round calls the backend once; a
//! round's tool calls run on the request's tool runner thread (started at its first tool round,
//! reused by the later ones; several calls of a round run concurrently on scoped threads of
//! their own) while this thread waits on a channel with a timeout and pokes the sink about once
//! a second (keep-alives, client-gone checks).
//! The request deadline goes into every backend round ([`TurnRequest::deadline`]) and is
//! checked while tools run: when it passes, the running calls are cancelled and the request is
//! answered 504 ([`LoopError::Deadline`]), never as a departed client.
//! Up to `max_tool_iterations` rounds offer tools; the round after that cannot call tools.
//! A forced `tool_choice` (`required`, or a named function) applies to the first round only;
//! later rounds send `auto`, or a model would be made to call tools until the budget runs out.
//! Text of every round reaches the client in both modes, rounds joined by a blank line —
//! except when the request asks for structured output (`response_format` `json_object` or
//! `json_schema`): then the answer is the final round's text only, and a stream holds each
//! round's text back until the round ends (only the last round's text is sent), so a model's
//! "Let me check." before a tool call never breaks the JSON a client parses.
//! The assistant message that carries a round's `tool_calls` always has string `content` (`""`
//! when the model said nothing): some OpenAI-compatible servers (llama-cpp-python) fail on a
//! missing key and refuse `null`, and every upstream's reference accepts a string.
//! With `vision: true` on the assistant, images that MCP tools return are added after the
//! round's tool results as one user message of `image_url` parts, at most
//! [`MAX_IMAGE_BYTES_PER_REQUEST`] of them per request ([`vision`]).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::api::openai::{
    ChatRequest, Content, FinishReason, Message, Role, Tool, ToolCall, Usage,
};
use crate::backend::{self, Backend, Cancelled, TurnRequest, TurnSink};
use crate::cancel::Cancel;
use crate::config::AssistantConfig;
use crate::error::ApiError;

pub mod vision;
pub use vision::MAX_IMAGE_BYTES_PER_REQUEST;

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
    /// `response_format` asks for JSON (`json_object`/`json_schema`): the answer is the final
    /// round's text only.
    pub structured: bool,
}

/// `response_format` of type `json_object` or `json_schema` (the Responses API's `text.format`
/// arrives translated into it).
fn wants_structured(params: &Map<String, Value>) -> bool {
    params
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| matches!(t, "json_object" | "json_schema"))
}

/// The `tool_choice` for a round after the first: a forced choice (`required`, a named
/// function, or any object form) becomes `auto`; `auto`, `none` and absence stay as they are.
pub fn later_tool_choice(choice: Option<&Value>) -> Option<Value> {
    match choice? {
        Value::String(s) if s == "required" || s == "any" => Some(Value::String("auto".into())),
        Value::Object(_) => Some(Value::String("auto".into())),
        other => Some(other.clone()),
    }
}

/// Check a chat request against an assistant and merge parameters: assistant defaults first,
/// then every non-null client value (docs/api.md#chat-completions).
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

    let structured = wants_structured(&params);
    Ok(Prepared {
        structured,
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
    /// A text delta that may be held back until [`LoopSink::flush`] or the next write (see
    /// [`TurnSink::text_held`]).
    fn text_held(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.text(delta)
    }
    /// Send what [`LoopSink::text_held`] held.
    fn flush(&mut self) -> Result<(), Cancelled> {
        Ok(())
    }
    /// A tool round is about to run.
    fn tool_round(&mut self, calls: &[ToolCall]) -> Result<(), Cancelled>;
    /// Called about once a second while tools run.
    fn waiting(&mut self) -> Result<(), Cancelled>;
    /// A tool round finished: the round's text, its calls, and one result message per call in
    /// the same order (writers that show tool calls, like the Responses API's `mcp_call` items).
    fn tools_done(
        &mut self,
        _text: &str,
        _calls: &[ToolCall],
        _results: &[Message],
    ) -> Result<(), Cancelled> {
        Ok(())
    }
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

/// The thread that runs a request's rounds of several tool calls (a round of one runs on the
/// request's own thread, `Run::run_tool_here`): started at the first such round and fed each
/// one's calls, so a request with many rounds starts one thread, not one per round (starting,
/// using and joining a thread costs ~55 µs, a sixth of a round's overhead; bench/NOTES.md).
struct ToolRunner {
    calls: crossbeam_channel::Sender<Vec<ToolCall>>,
    results: crossbeam_channel::Receiver<Vec<Message>>,
}

/// The request's [`ToolRunner`], started by its first round of several calls.
struct LazyRunner<'s> {
    start: &'s mut dyn FnMut() -> Option<ToolRunner>,
    started: Option<ToolRunner>,
}

impl LazyRunner<'_> {
    /// The runner, started now if no round has yet (`None` when no thread can be started).
    fn get(&mut self) -> Option<&ToolRunner> {
        if self.started.is_none() {
            self.started = (self.start)();
        }
        self.started.as_ref()
    }
}

impl<'a> Run<'a> {
    pub fn run(&self, prepared: &Prepared, sink: &mut dyn LoopSink) -> Result<Outcome, LoopError> {
        // The runner thread, if a round starts it, ends when its sender is dropped with the
        // loop, and is joined here (after cancelled calls return, as each one watches `cancel`).
        std::thread::scope(|scope| {
            let mut runner = LazyRunner {
                start: &mut || self.start_runner(scope),
                started: None,
            };
            self.run_rounds(prepared, sink, &mut runner)
        })
    }

    /// Start the tool runner thread (`None` when no thread can be started).
    fn start_runner<'scope>(
        &self,
        scope: &'scope std::thread::Scope<'scope, '_>,
    ) -> Option<ToolRunner>
    where
        'a: 'scope,
    {
        let (calls_tx, calls_rx) = crossbeam_channel::bounded::<Vec<ToolCall>>(1);
        let (results_tx, results_rx) = crossbeam_channel::bounded(1);
        let (tools, cancel) = (self.tools, self.cancel);
        // A small fixed stack, like the worker's.
        std::thread::Builder::new()
            .name("tool-calls".into())
            .stack_size(crate::http::DEFAULT_STACK_SIZE)
            .spawn_scoped(scope, move || {
                for calls in calls_rx {
                    if results_tx.send(tools.call_all(&calls, cancel)).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(ToolRunner {
            calls: calls_tx,
            results: results_rx,
        })
    }

    fn run_rounds(
        &self,
        prepared: &Prepared,
        sink: &mut dyn LoopSink,
        runner: &mut LazyRunner<'_>,
    ) -> Result<Outcome, LoopError> {
        let mut messages = prepared.messages.clone();
        // The set's own definitions as they are, unless the client added tools of its own.
        let offered: Cow<'_, [Tool]> = if prepared.client_tools.is_empty() {
            Cow::Borrowed(self.tools.definitions())
        } else {
            let all = self
                .tools
                .definitions()
                .iter()
                .chain(&prepared.client_tools);
            Cow::Owned(all.cloned().collect())
        };
        // A set: a hostile model or client may send thousands of calls and tools.
        let client_names: std::collections::HashSet<&str> = prepared
            .client_tools
            .iter()
            .map(|t| t.function.name.as_str())
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
        let later_choice = later_tool_choice(prepared.tool_choice.as_ref());
        let mut image_budget = vision::Budget::new(MAX_IMAGE_BYTES_PER_REQUEST);
        for round in 0..=max {
            self.check()?;
            let final_round = round == max || offered.is_empty();
            let tool_choice = if round == 0 {
                prepared.tool_choice.as_ref()
            } else {
                later_choice.as_ref()
            };
            let request = TurnRequest {
                model: &self.assistant.model,
                messages: &messages,
                tools: &offered,
                tool_choice,
                final_round,
                params: &prepared.params,
                extra_body: &self.assistant.extra_body,
                stream: prepared.stream,
                deadline: self.deadline,
            };
            let mut round_sink = RoundSink {
                sink: &mut *sink,
                separate: !out.content.is_empty(),
                wrote: false,
                hold: prepared.structured,
            };
            let turn = self
                .backend
                .turn(&request, &mut round_sink)
                .map_err(|e| match e {
                    backend::Error::Cancelled => LoopError::Cancelled,
                    // The backend gave up because the request's own deadline passed.
                    backend::Error::Timeout if Instant::now() >= self.deadline => {
                        LoopError::Deadline
                    }
                    other => LoopError::Backend(other),
                })?;
            out.rounds += 1;
            out.usage.add(&turn.usage);
            if prepared.structured {
                // Only the answering round's text counts; it is sent once the round is over.
                out.content = turn.content.clone();
            } else if !turn.content.is_empty() {
                if !out.content.is_empty() {
                    out.content.push_str("\n\n");
                }
                out.content.push_str(&turn.content);
            }
            let answers = turn.tool_calls.is_empty()
                || final_round
                || turn
                    .tool_calls
                    .iter()
                    .any(|c| client_names.contains(c.function.name.as_str()));
            if prepared.structured && answers && prepared.stream && !turn.content.is_empty() {
                sink.text(&turn.content).map_err(|_| self.cancelled())?;
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
                .filter(|c| client_names.contains(c.function.name.as_str()))
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
            // String content, `""` when the model said nothing (see the module doc).
            let mut assistant_msg =
                Message::new(Role::Assistant, Some(Content::Text(turn.content.clone())));
            assistant_msg.tool_calls = Some(turn.tool_calls.clone());
            assistant_msg.provider_state = turn.provider_state.clone();
            messages.push(assistant_msg);
            out.tool_calls += turn.tool_calls.len() as u32;
            let mut results = match turn.tool_calls.as_slice() {
                [_] => self.run_tool_here(&turn.tool_calls, sink)?,
                _ => self.run_tools(runner.get(), &turn.tool_calls, sink)?,
            };
            // Structured output: a tool round's text is not part of the answer.
            let shown = if prepared.structured {
                ""
            } else {
                turn.content.as_str()
            };
            sink.tools_done(shown, &turn.tool_calls, &results)
                .map_err(|_| self.cancelled())?;
            let images = if self.assistant.vision {
                vision::images_message(&mut results, &mut image_budget)
            } else {
                None
            };
            messages.extend(results);
            messages.extend(images);
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

    /// Run a round's one tool call on this thread. Its waits call back between their slices
    /// (`mcp::tick_caller`, through the hook lent here), so the sink's keep-alives, a departed
    /// client and the deadline are watched as when the runner thread runs a round; this spares
    /// starting the runner and two thread hand-offs per round.
    fn run_tool_here(
        &self,
        calls: &[ToolCall],
        sink: &mut dyn LoopSink,
    ) -> Result<Vec<Message>, LoopError> {
        // Set when the deadline (not the client) stopped the call: the answer is then 504.
        let mut timed_out = false;
        let mut ticked = Instant::now();
        let mut tick = || {
            if ticked.elapsed() >= WAIT_TICK {
                ticked = Instant::now();
                if sink.waiting().is_err() {
                    self.cancel.cancel();
                }
            }
            if Instant::now() >= self.deadline && !self.cancel.is_cancelled() {
                timed_out = true;
                self.cancel.cancel();
            }
            !self.cancel.is_cancelled()
        };
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::sys::scoped::with_hook(&mut tick, || self.tools.call_all(calls, self.cancel))
        }))
        .map_err(|_| LoopError::Backend(backend::Error::Protocol("tool call failed".into())))?;
        if timed_out {
            return Err(LoopError::Deadline);
        }
        self.check()?;
        Ok(results)
    }

    /// Run a round's tools on the runner thread while this one keeps the sink alive.
    fn run_tools(
        &self,
        runner: Option<&ToolRunner>,
        calls: &[ToolCall],
        sink: &mut dyn LoopSink,
    ) -> Result<Vec<Message>, LoopError> {
        let runner_failed =
            || LoopError::Backend(backend::Error::Protocol("tool runner failed".into()));
        let Some(runner) = runner else {
            return Err(runner_failed());
        };
        if runner.calls.send(calls.to_vec()).is_err() {
            return Err(runner_failed());
        }
        // Set when the deadline (not the client) stopped the tools: the answer is then 504.
        let mut timed_out = false;
        let results = loop {
            match runner.results.recv_timeout(WAIT_TICK) {
                Ok(results) => break results,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if sink.waiting().is_err() {
                        self.cancel.cancel();
                    }
                    if Instant::now() >= self.deadline && !self.cancel.is_cancelled() {
                        // Stops the running calls (each MCP call watches `cancel`).
                        timed_out = true;
                        self.cancel.cancel();
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(runner_failed());
                }
            }
        };
        if timed_out {
            return Err(LoopError::Deadline);
        }
        self.check()?;
        Ok(results)
    }
}

/// Passes one round's deltas to the loop sink, putting a blank line between rounds' text.
/// With `hold` (structured output) it passes nothing: the loop sends the answering round's
/// text when that round is over.
struct RoundSink<'a> {
    sink: &'a mut dyn LoopSink,
    separate: bool,
    wrote: bool,
    hold: bool,
}

impl RoundSink<'_> {
    fn pass(&mut self, delta: &str, held: bool) -> Result<(), Cancelled> {
        if delta.is_empty() || self.hold {
            return Ok(());
        }
        if self.separate && !self.wrote {
            self.sink.text_held("\n\n")?;
        }
        self.wrote = true;
        if held {
            self.sink.text_held(delta)
        } else {
            self.sink.text(delta)
        }
    }
}

impl TurnSink for RoundSink<'_> {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.pass(delta, false)
    }

    fn text_held(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.pass(delta, true)
    }

    fn flush(&mut self) -> Result<(), Cancelled> {
        self.sink.flush()
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
mod tests;
