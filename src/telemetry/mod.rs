//! OpenTelemetry traces (issue 17): spans named and attributed after the GenAI semantic
//! conventions, exported over OTLP/HTTP with JSON encoding (`POST {endpoint}/v1/traces`).
//!
//! One span per `/v1` request (`chat {assistant}`, kind server; started in `gateway::routes`),
//! a child per model round (`chat {model}`, kind client; in `gateway::run::Metered`) and one
//! per tool call (`execute_tool {tool}`; in `tools::ToolSet`). A client's W3C `traceparent`
//! is honoured (same trace id; the request span's parent is the client's span, its sampled
//! flag decides) and a `traceparent` naming the round span goes to the upstream
//! (`backend::upstream`).
//!
//! The context of the request a thread works for is thread-local ([`enter`], [`current`]),
//! like `mcp::logctx`; the tool set carries it into its scoped threads. Finished spans go to
//! `export`'s background thread through a bounded queue: a full queue, or a batch the
//! collector refused or did not take in time, is dropped and counted
//! (`aiproxy_trace_spans_dropped_total`), never waited for on a request's thread.

mod export;

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

pub use export::Tracer;

/// Where a span sits in its trace.
#[derive(Clone)]
pub struct Ctx {
    tracer: Arc<Tracer>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

impl Ctx {
    /// The W3C `traceparent` naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// Start a child span of this one.
    pub fn child(&self, name: &str, kind: Kind) -> Span {
        Span::new(
            Ctx {
                tracer: Arc::clone(&self.tracer),
                trace_id: self.trace_id,
                span_id: new_id(),
                sampled: self.sampled,
            },
            Some(self.span_id),
            name,
            kind,
        )
    }
}

/// The OTLP span kinds we use.
#[derive(Clone, Copy)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute value (the OTLP JSON `AnyValue` shapes).
pub enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
    StrList(Vec<String>),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Attr {
        Attr::Str(s.to_string())
    }
}
impl From<String> for Attr {
    fn from(s: String) -> Attr {
        Attr::Str(s)
    }
}
impl From<i64> for Attr {
    fn from(n: i64) -> Attr {
        Attr::Int(n)
    }
}
impl From<u64> for Attr {
    fn from(n: u64) -> Attr {
        Attr::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Attr {
    fn from(b: bool) -> Attr {
        Attr::Bool(b)
    }
}

impl Attr {
    fn json(&self) -> Value {
        match self {
            // int64 is a string in the proto3 JSON mapping.
            Attr::Int(n) => json!({"intValue": n.to_string()}),
            Attr::Str(s) => json!({"stringValue": s}),
            Attr::Bool(b) => json!({"boolValue": b}),
            Attr::StrList(v) => {
                let values: Vec<Value> = v.iter().map(|s| json!({"stringValue": s})).collect();
                json!({"arrayValue": {"values": values}})
            }
        }
    }
}

/// A span being recorded; exported when dropped (or [`Span::end`]ed).
pub struct Span {
    ctx: Ctx,
    parent: Option<[u8; 8]>,
    name: String,
    kind: Kind,
    start: u64,
    attrs: Vec<(&'static str, Attr)>,
    error: Option<String>,
}

impl Span {
    fn new(ctx: Ctx, parent: Option<[u8; 8]>, name: &str, kind: Kind) -> Span {
        Span {
            ctx,
            parent,
            name: name.to_string(),
            kind,
            start: crate::clock::unix_nanos(),
            attrs: Vec::new(),
            error: None,
        }
    }

    /// The root span of a request: a child of the client's `traceparent` when it sent a valid
    /// one, else the start of a new trace (sampled by `sample_ratio`).
    pub fn request(tracer: &Arc<Tracer>, traceparent: Option<&str>, name: &str) -> Span {
        let (trace_id, parent, sampled) = match traceparent.and_then(parse_traceparent) {
            Some((t, p, s)) => (t, Some(p), s),
            None => {
                let t = new_trace_id();
                (t, None, tracer.samples(&t))
            }
        };
        let ctx = Ctx {
            tracer: Arc::clone(tracer),
            trace_id,
            span_id: new_id(),
            sampled,
        };
        Span::new(ctx, parent, name, Kind::Server)
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn rename(&mut self, name: String) {
        self.name = name;
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Attr>) {
        self.attrs.push((key, value.into()));
    }

    pub fn set_list(&mut self, key: &'static str, values: Vec<String>) {
        self.attrs.push((key, Attr::StrList(values)));
    }

    /// Mark the span failed (status `ERROR`, and `error.type`).
    pub fn fail(&mut self, error_type: &str) {
        self.error = Some(error_type.to_string());
    }

    pub fn end(self) {}

    fn to_json(&self, end: u64) -> Value {
        let mut attrs: Vec<Value> = self
            .attrs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v.json()}))
            .collect();
        let status = match &self.error {
            Some(e) => {
                attrs.push(json!({"key": "error.type", "value": {"stringValue": e}}));
                json!({"code": 2, "message": e})
            }
            None => json!({"code": 0}),
        };
        let mut span = json!({
            "traceId": hex(&self.ctx.trace_id),
            "spanId": hex(&self.ctx.span_id),
            "name": self.name,
            "kind": self.kind as i32,
            "startTimeUnixNano": self.start.to_string(),
            "endTimeUnixNano": end.max(self.start).to_string(),
            "attributes": attrs,
            "status": status,
        });
        if let (Some(p), Some(o)) = (self.parent, span.as_object_mut()) {
            o.insert("parentSpanId".into(), Value::String(hex(&p)));
        }
        span
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if self.ctx.sampled {
            let json = self.to_json(crate::clock::unix_nanos());
            self.ctx.tracer.queue(json);
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// Restores the thread's previous context when dropped.
pub struct Guard(Option<Ctx>);

/// Work under `ctx` (or none) on this thread until the guard is dropped.
pub fn enter(ctx: Option<Ctx>) -> Guard {
    Guard(CURRENT.with(|c| c.replace(ctx)))
}

impl Drop for Guard {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The span this thread works under.
pub fn current() -> Option<Ctx> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The `traceparent` to send with an outbound request made on this thread.
pub fn traceparent() -> Option<String> {
    CURRENT.with(|c| c.borrow().as_ref().map(Ctx::traceparent))
}

/// `00-<32 hex>-<16 hex>-<2 hex>` with non-zero ids (W3C Trace Context, version 00; a later
/// version's extra fields are ignored).
fn parse_traceparent(s: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = s.trim().split('-');
    let version = parts.next()?;
    let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace: [u8; 16] = unhex(trace)?.try_into().ok()?;
    let parent: [u8; 8] = unhex(parent)?.try_into().ok()?;
    let flags = unhex(flags)?;
    if trace == [0; 16] || parent == [0; 8] || flags.len() != 1 {
        return None;
    }
    Some((trace, parent, flags[0] & 1 == 1))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2)
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// 64 bits nobody can predict: a counter and the clock under a keyed hash (SipHash with
/// random keys), never zero.
fn random_u64() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let h = KEYS
        .get_or_init(RandomState::new)
        .hash_one((n, crate::clock::unix_nanos()));
    h.max(1)
}

fn new_id() -> [u8; 8] {
    random_u64().to_be_bytes()
}

fn new_trace_id() -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&random_u64().to_be_bytes());
    t[8..].copy_from_slice(&random_u64().to_be_bytes());
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (t, p, s) = parse_traceparent(tp).unwrap();
        assert_eq!(hex(&t), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&p), "b7ad6b7169203331");
        assert!(s);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-é f7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        assert_ne!(new_id(), new_id());
    }
}
