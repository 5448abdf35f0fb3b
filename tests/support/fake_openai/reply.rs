//! Scripted replies of the fake OpenAI upstream and the bytes they become (JSON or SSE).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// One scripted answer to a `POST …/chat/completions`. Build with the constructors, refine with
/// the `with_*`/modifier methods. Text and tool replies follow the request's `stream` flag.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(super) kind: Kind,
    pub(super) head_delay: Duration,
    pub(super) chunk_delay: Duration,
    /// A stream's head, events and end leave in one write (as a fast upstream's often do).
    pub(super) one_write: bool,
    /// `(prompt_tokens, completion_tokens)`; in a stream only when the request asked with
    /// `stream_options.include_usage`.
    pub(super) usage: Option<(u64, u64)>,
    /// llama-cpp-python style deltas: id/type/name repeated in every tool delta, a legacy
    /// `function_call`, explicit nulls, no `index` on the choice.
    pub(super) llama: bool,
    pub(super) ids: bool,
    pub(super) finish_reason: Option<String>,
    pub(super) fault: Fault,
    pub(super) extra_headers: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Completion {
        deltas: Vec<String>,
        calls: Vec<(String, String)>,
    },
    /// Text = "You said: <last user message>".
    EchoUser,
    Error {
        status: u16,
        body: Value,
    },
    /// Read the request, never answer (until the client leaves or the fake stops).
    Hang,
    /// 200 and then, every 200 ms until the client leaves, a sign of life that never ends the
    /// answer: an SSE comment, an empty delta, or (non-stream requests) a space of JSON.
    Trickle(Trickle),
    InvalidJson,
    Huge(usize),
    Raw {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// Decided per request by a function of its JSON body (see [`Reply::dynamic`]).
    Dynamic(Responder),
}

/// The function behind [`Reply::dynamic`].
#[derive(Clone)]
pub struct Responder(Arc<dyn Fn(&Value) -> Reply + Send + Sync>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// What a trickling upstream repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trickle {
    /// `: keep-alive` comments (non-stream requests: whitespace of a JSON body).
    Comments,
    /// `data:` chunks whose delta is empty (non-stream requests: whitespace too).
    EmptyDeltas,
}

/// A failure partway through a completion, after `n` SSE events (or, non-stream, half the body).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fault {
    None,
    /// Close the connection without finishing the body.
    CloseAfter(usize),
    /// Stop sending, keep the connection open.
    HangAfter(usize),
    /// Send `data: {"error":…}`, then end the body (no `[DONE]`).
    ErrorAfter(usize, Value),
}

impl Reply {
    fn new(kind: Kind) -> Self {
        Reply {
            kind,
            head_delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            one_write: false,
            usage: Some((10, 5)),
            llama: false,
            ids: true,
            finish_reason: None,
            fault: Fault::None,
            extra_headers: Vec::new(),
        }
    }

    /// A text answer, streamed word by word.
    pub fn text(text: &str) -> Self {
        Self::deltas(&split_words(text))
    }

    /// A text answer streamed exactly as these deltas.
    pub fn deltas<S: AsRef<str>>(deltas: &[S]) -> Self {
        Self::new(Kind::Completion {
            deltas: deltas.iter().map(|d| d.as_ref().to_string()).collect(),
            calls: Vec::new(),
        })
    }

    /// One tool call; in a stream its arguments are split over three chunks.
    pub fn tool_call(name: &str, arguments: &str) -> Self {
        Self::tool_calls(&[(name, arguments)])
    }

    pub fn tool_calls(calls: &[(&str, &str)]) -> Self {
        Self::new(Kind::Completion {
            deltas: Vec::new(),
            calls: calls
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect(),
        })
    }

    /// "You said: <text of the last user message>".
    pub fn echo_user() -> Self {
        Self::new(Kind::EchoUser)
    }

    /// A reply computed from each request's JSON body (a model stand-in; usable as the default).
    pub fn dynamic(f: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        Self::new(Kind::Dynamic(Responder(Arc::new(f))))
    }

    /// The reply for this request: a dynamic one asks its function, others are themselves.
    pub(super) fn for_request(self, request: &Value) -> Reply {
        match &self.kind {
            Kind::Dynamic(Responder(f)) => f(request),
            _ => self,
        }
    }

    /// A non-2xx status with an OpenAI-shaped error body.
    pub fn error(status: u16, message: &str) -> Self {
        let body =
            json!({"error":{"message":message,"type":"fake_error","param":null,"code":null}});
        Self::new(Kind::Error { status, body })
    }

    pub fn hang() -> Self {
        Self::new(Kind::Hang)
    }

    /// An answer that never ends and never says anything (see [`Trickle`]).
    pub fn trickle(what: Trickle) -> Self {
        Self::new(Kind::Trickle(what))
    }

    /// 200 with a body that is not JSON (non-stream) or a `data:` event that is not (stream).
    pub fn invalid_json() -> Self {
        Self::new(Kind::InvalidJson)
    }

    /// A text answer of `bytes` bytes in one piece (one SSE event when streamed).
    pub fn huge(bytes: usize) -> Self {
        Self::new(Kind::Huge(bytes))
    }

    /// Exactly this status, content type and body, whatever the request.
    pub fn raw(status: u16, content_type: &str, body: &str) -> Self {
        Self::new(Kind::Raw {
            status,
            content_type: content_type.into(),
            body: body.as_bytes().to_vec(),
        })
    }

    /// Text before the tool calls of a tool reply (or more text after a text reply's).
    pub fn with_text(mut self, text: &str) -> Self {
        if let Kind::Completion { deltas, .. } = &mut self.kind {
            deltas.extend(split_words(text));
        }
        self
    }

    pub fn retry_after(self, value: &str) -> Self {
        self.header("Retry-After", value)
    }

    /// An extra response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    /// Wait before sending the response head.
    pub fn head_delay(mut self, d: Duration) -> Self {
        self.head_delay = d;
        self
    }

    /// Wait before each SSE event after the first.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = d;
        self
    }

    /// Send a stream's head, all its events and its end in one write.
    pub fn in_one_write(mut self) -> Self {
        self.one_write = true;
        self
    }

    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Some((prompt, completion));
        self
    }

    pub fn no_usage(mut self) -> Self {
        self.usage = None;
        self
    }

    pub fn llama_style(mut self) -> Self {
        self.llama = true;
        self
    }

    /// Tool calls without `id`.
    pub fn no_ids(mut self) -> Self {
        self.ids = false;
        self
    }

    pub fn finish_reason(mut self, r: &str) -> Self {
        self.finish_reason = Some(r.into());
        self
    }

    /// Close the connection after `n` events (non-stream: after half the body).
    pub fn close_after(mut self, n: usize) -> Self {
        self.fault = Fault::CloseAfter(n);
        self
    }

    /// Go silent after `n` events, connection kept open.
    pub fn hang_after(mut self, n: usize) -> Self {
        self.fault = Fault::HangAfter(n);
        self
    }

    /// A `data: {"error":{"message":…}}` event after `n` events; `code` as given.
    pub fn error_after(mut self, n: usize, message: &str, code: Value) -> Self {
        self.fault = Fault::ErrorAfter(
            n,
            json!({"error":{"message":message,"type":"server_error","code":code}}),
        );
        self
    }
}

/// Words with their leading whitespace (they concatenate back to the text).
pub fn split_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() && cur.chars().any(|c| !c.is_whitespace()) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// What a completion reply says, resolved against the request.
pub(super) struct Resolved {
    pub deltas: Vec<String>,
    pub calls: Vec<(String, String)>,
}

pub(super) fn resolve(kind: &Kind, request: &Value) -> Resolved {
    match kind {
        Kind::Completion { deltas, calls } => Resolved {
            deltas: deltas.clone(),
            calls: calls.clone(),
        },
        Kind::EchoUser => {
            let last = request["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .map(|m| match &m["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            Resolved {
                deltas: split_words(&format!("You said: {last}")),
                calls: Vec::new(),
            }
        }
        Kind::Huge(n) => Resolved {
            deltas: vec!["x".repeat(*n)],
            calls: Vec::new(),
        },
        _ => Resolved {
            deltas: Vec::new(),
            calls: Vec::new(),
        },
    }
}

impl Reply {
    fn finish(&self, r: &Resolved) -> String {
        self.finish_reason.clone().unwrap_or_else(|| {
            if r.calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            }
            .to_string()
        })
    }

    fn usage_json(&self) -> Value {
        match self.usage {
            Some((p, c)) => json!({"prompt_tokens":p,"completion_tokens":c,"total_tokens":p+c}),
            None => Value::Null,
        }
    }

    fn call_id(&self, i: usize) -> Value {
        if self.ids {
            json!(format!("call_fake_{i}"))
        } else {
            Value::Null
        }
    }

    /// The non-stream `chat.completion` body.
    pub(super) fn completion_body(&self, r: &Resolved, model: &str) -> Value {
        let content: String = r.deltas.concat();
        let mut message = json!({"role":"assistant","content": if content.is_empty() && !r.calls.is_empty() { Value::Null } else { json!(content) }});
        if !r.calls.is_empty() {
            message["tool_calls"] = r
                .calls
                .iter()
                .enumerate()
                .map(|(i, (n, a))| {
                    let mut c = json!({"type":"function","function":{"name":n,"arguments":a}});
                    if self.ids {
                        c["id"] = self.call_id(i);
                    }
                    c
                })
                .collect();
        }
        let mut body = json!({"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"model":model,
            "choices":[{"index":0,"message":message,"finish_reason":self.finish(r)}]});
        if self.usage.is_some() {
            body["usage"] = self.usage_json();
        }
        body
    }

    /// The `data:` payloads of a stream, `[DONE]` included.
    pub(super) fn stream_events(
        &self,
        r: &Resolved,
        model: &str,
        include_usage: bool,
    ) -> Vec<String> {
        let chunk = |delta: Value, finish: Value| {
            let mut choice = json!({"index":0,"delta":delta,"finish_reason":finish});
            if self.llama {
                choice.as_object_mut().map(|o| o.remove("index"));
                choice["logprobs"] = Value::Null;
            }
            json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1700000000,"model":model,"choices":[choice]})
                .to_string()
        };
        let mut out = vec![chunk(json!({"role":"assistant","content":""}), Value::Null)];
        for d in &r.deltas {
            let delta = if self.llama {
                json!({"role":null,"content":d,"tool_calls":null})
            } else {
                json!({"content":d})
            };
            out.push(chunk(delta, Value::Null));
        }
        for (i, (name, args)) in r.calls.iter().enumerate() {
            let pieces = split_in_three(args);
            if !self.llama {
                let mut first =
                    json!({"index":i,"type":"function","function":{"name":name,"arguments":""}});
                if self.ids {
                    first["id"] = self.call_id(i);
                }
                out.push(chunk(json!({"tool_calls":[first]}), Value::Null));
            }
            for p in pieces {
                let delta = if self.llama {
                    json!({"role":null,"content":null,
                        "function_call":{"name":name,"arguments":p},
                        "tool_calls":[{"index":i,"id":self.call_id(i),"type":"function","function":{"name":name,"arguments":p}}]})
                } else {
                    json!({"tool_calls":[{"index":i,"function":{"arguments":p}}]})
                };
                out.push(chunk(delta, Value::Null));
            }
        }
        out.push(chunk(json!({}), json!(self.finish(r))));
        if include_usage && self.usage.is_some() {
            out.push(
                json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1700000000,"model":model,"choices":[],"usage":self.usage_json()})
                    .to_string(),
            );
        }
        out.push("[DONE]".into());
        out
    }
}

fn split_in_three(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len().div_ceil(3).max(1);
    let pieces: Vec<String> = chars.chunks(n).map(|c| c.iter().collect()).collect();
    if pieces.is_empty() {
        vec![String::new()]
    } else {
        pieces
    }
}
