//! One MCP session over any transport: requests multiplexed by JSON-RPC id (replies come back
//! through the dispatcher in `dispatch.rs`), the 2026-07-28 request envelope and its version
//! retry, liveness pings, and tool listing / calling. The handshake (era detection,
//! `initialize`) is in `handshake.rs`.
//!
//! Thread model: callers on any thread send a request and wait on their own reply slot
//! (`dispatch::ReplySlot`) in short slices (so a [`Cancel`] is noticed within ~100 ms, and the
//! caller's lent hook runs between them: `mcp::tick_caller`); the
//! transport's threads route each reply to its waiter by id, answer server→client requests
//! (`ping` → `{}`, everything else → -32601) and handle notifications. When the transport dies,
//! every waiter fails at once with [`Error::Closed`]. The pending map is locked only to insert
//! or remove an entry, never across I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::dispatch::{Dispatcher, Failure, ReplySlot};
use super::era::{self, Round};
use super::headers::{self, ParamHeader};
use super::jsonrpc::{Id, Message, RpcError};
use super::protocol::{self, cut};
use super::transport::{Grace, Inbound, RequestFailure, SendError, Transport};
use super::{Error, LeftOut, ToolInfo};
use crate::cancel::Cancel;

/// Waiters wake at least this often to check their deadline and their `Cancel`.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Budget for small fire-and-forget writes (notifications, replies to server requests).
const NOTIFY_WRITE: Duration = Duration::from_secs(2);
/// A server that pages forever is cut off here.
const MAX_TOOL_PAGES: usize = 1000;
/// 2026-07-28 sessions get no `list_changed` notifications (no stream to carry them); the tool
/// list is re-fetched when its `ttlMs` runs out (caching.mdx), and at least this often when
/// the server gives none or 0 ("immediately stale": re-fetching per use MAY be done, but would
/// cost a round trip per chat request).
const DEFAULT_TOOLS_TTL: Duration = Duration::from_secs(60);
/// Shortest `ttlMs` honoured.
const MIN_TOOLS_TTL: Duration = Duration::from_secs(1);

/// How a request failed, and whether the server can have seen it. A request that was never
/// delivered may be retried on a fresh session; one that was delivered may have had effects.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    NotSent(Error),
    Failed(Error),
    /// The server answered with a JSON-RPC error (kept whole: `data` carries the versions a
    /// `-32022` offers).
    Rejected(RpcError),
}

impl RequestError {
    pub fn into_error(self) -> Error {
        match self {
            RequestError::NotSent(e) | RequestError::Failed(e) => e,
            RequestError::Rejected(e) => Error::Rpc {
                code: e.code,
                message: cut(&e.message, 500),
            },
        }
    }

    /// Once a call has been delivered, a later failure to send must not look retryable.
    fn delivered(self) -> RequestError {
        match self {
            RequestError::NotSent(e) => RequestError::Failed(e),
            other => other,
        }
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub protocol_version: String,
    /// Stateless 2026-07-28: every request carries the `_meta` envelope.
    pub modern: bool,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
}

/// One live session with one server.
pub struct Session {
    pub(super) name: String,
    pub(super) transport: Box<dyn Transport>,
    dispatch: Arc<Dispatcher>,
    next_id: AtomicI64,
    info: OnceLock<SessionInfo>,
    /// Modern era: when the listed tools go stale.
    tools_fresh_until: Mutex<Option<Instant>>,
    /// Modern era: the `x-mcp-header` parameters of each listed tool.
    param_headers: Mutex<HashMap<String, Vec<ParamHeader>>>,
    /// A liveness ping is in flight (one at a time).
    pinging: AtomicBool,
    /// Tools of the last complete listing that are not offered, with why.
    left_out: Mutex<Arc<Vec<LeftOut>>>,
}

impl Session {
    /// Connect via `connect`, which receives the dispatcher to deliver messages to. No
    /// handshake yet (see `handshake.rs`).
    pub(super) fn connect(
        name: &str,
        connect: impl FnOnce(Arc<dyn Inbound>) -> Result<Box<dyn Transport>, String>,
    ) -> Result<Session, Error> {
        let dispatch = Arc::new(Dispatcher::new(name));
        let transport = connect(dispatch.clone()).map_err(Error::Start)?;
        Ok(Session {
            name: name.to_string(),
            transport,
            dispatch,
            next_id: AtomicI64::new(1),
            info: OnceLock::new(),
            tools_fresh_until: Mutex::new(None),
            param_headers: Mutex::new(HashMap::new()),
            pinging: AtomicBool::new(false),
            left_out: Mutex::new(Arc::new(Vec::new())),
        })
    }

    pub(super) fn set_info(&self, info: SessionInfo) {
        let _ = self.info.set(info);
    }

    pub fn info(&self) -> Option<&SessionInfo> {
        self.info.get()
    }

    /// Send a request and wait for its reply until `deadline`, or until `cancel` fires. In the
    /// modern era the `_meta` envelope is added, and a `-32022` naming a version we speak is
    /// answered by one retry with that version (2026-07-28 versioning.mdx).
    pub fn request(
        &self,
        method: &str,
        params: Option<Value>,
        deadline: Instant,
        cancel: Option<&Cancel>,
    ) -> Result<Value, RequestError> {
        self.request_with_headers(method, params, deadline, cancel, &[])
    }

    /// [`Session::request`] with extra HTTP headers (`Mcp-Param-*`).
    fn request_with_headers(
        &self,
        method: &str,
        params: Option<Value>,
        deadline: Instant,
        cancel: Option<&Cancel>,
        headers: &[(String, String)],
    ) -> Result<Value, RequestError> {
        let Some(version) = self.info.get().filter(|i| i.modern) else {
            return self.exchange(method, params, deadline, cancel, headers);
        };
        let first = era::with_meta(params.clone(), &version.protocol_version);
        match self.exchange(method, Some(first), deadline, cancel, headers) {
            Err(RequestError::Rejected(e)) if e.code == era::UNSUPPORTED_PROTOCOL_VERSION => {
                let Some(retry) = era::pick_supported(&e) else {
                    return Err(RequestError::Rejected(e));
                };
                log::debug!(
                    "{}mcp[{}]: {method} refused version {}; retrying with {retry}",
                    crate::mcp::logctx::prefix(),
                    self.name,
                    version.protocol_version
                );
                let again = era::with_meta(params, retry);
                self.exchange(method, Some(again), deadline, cancel, headers)
            }
            other => other,
        }
    }

    /// One request on the wire, without the modern envelope logic. On timeout or cancel, a
    /// `notifications/cancelled` goes out (when `cancel` is given: the handshake passes `None`
    /// because `initialize` must not be cancelled) and a late reply is dropped by the
    /// dispatcher.
    pub(super) fn request_once(
        &self,
        method: &str,
        params: Option<Value>,
        deadline: Instant,
        cancel: Option<&Cancel>,
    ) -> Result<Value, RequestError> {
        self.exchange(method, params, deadline, cancel, &[])
    }

    fn exchange(
        &self,
        method: &str,
        params: Option<Value>,
        deadline: Instant,
        cancel: Option<&Cancel>,
        headers: &[(String, String)],
    ) -> Result<Value, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(ReplySlot::default());
        {
            let mut p = self.dispatch.pending.lock();
            if let Some(reason) = &p.closed {
                return Err(RequestError::NotSent(Error::Closed(reason.clone())));
            }
            p.waiters.insert(id, slot.clone());
        }
        let msg = Message::request(Id::Int(id), method, params);
        let oversized_before = self.dispatch.unmatched_oversized.load(Ordering::Acquire);
        if let Err(e) = self.transport.send_with_headers(&msg, deadline, headers) {
            self.dispatch.pending.lock().waiters.remove(&id);
            return Err(RequestError::NotSent(match e {
                SendError::Closed(r) => Error::Closed(r),
                SendError::Timeout => Error::Timeout,
                SendError::Rejected(r) => Error::Protocol(r),
            }));
        }
        loop {
            if cancel.is_some_and(Cancel::is_cancelled) {
                self.abandon(id, method, "the client went away", cancel.is_some());
                return Err(RequestError::Failed(Error::Cancelled));
            }
            let now = Instant::now();
            if now >= deadline {
                self.abandon(id, method, "timed out", cancel.is_some());
                // A reply too large to keep, whose id could not be seen, came meanwhile: most
                // likely this one's.
                if self.dispatch.unmatched_oversized.load(Ordering::Acquire) != oversized_before {
                    return Err(RequestError::Failed(Error::TooLarge(
                        super::transport::stdio::MAX_LINE,
                    )));
                }
                return Err(RequestError::Failed(Error::Timeout));
            }
            match slot.take((deadline - now).min(WAIT_SLICE)) {
                Some(Ok(v)) => return Ok(v),
                Some(Err(f)) => return Err(failure_error(f)),
                None => super::tick_caller(),
            }
        }
    }

    /// Stop waiting for `id`; tell the server (cancellation.mdx) unless it is the handshake.
    fn abandon(&self, id: i64, method: &str, reason: &str, tell: bool) {
        let was_pending = self.dispatch.pending.lock().waiters.remove(&id).is_some();
        // Close the request's own exchange first (HTTP): immediate, whatever the server does
        // with the notification.
        self.transport.cancel_request(&Id::Int(id));
        log::debug!(
            "{}mcp[{}]: {method} #{id} {reason}",
            crate::mcp::logctx::prefix(),
            self.name
        );
        if was_pending && tell {
            let params = json!({"requestId": id, "reason": reason});
            let _ = self.notify("notifications/cancelled", Some(params));
        }
    }

    /// Send a notification (bounded write).
    pub fn notify(&self, method: &str, params: Option<Value>) -> Result<(), Error> {
        self.transport
            .send(
                &Message::notification(method, params),
                Instant::now() + NOTIFY_WRITE,
            )
            .map_err(|e| match e {
                SendError::Closed(r) => Error::Closed(r),
                SendError::Timeout => Error::Timeout,
                SendError::Rejected(r) => Error::Protocol(r),
            })
    }

    /// All tools, following `nextCursor` until it is absent (pagination.mdx). Clears the
    /// "list changed" flag first, so a change announced during the listing triggers another.
    pub fn list_tools(
        &self,
        deadline: Instant,
        cancel: Option<&Cancel>,
    ) -> Result<Vec<ToolInfo>, RequestError> {
        self.dispatch.tools_stale.store(false, Ordering::Release);
        let listed_at = Instant::now();
        let mut ttl: Option<Duration> = None;
        let mut tools: Vec<ToolInfo> = Vec::new();
        let mut left_out: Vec<LeftOut> = Vec::new();
        // Names seen so far: a set, as a hostile server may list tens of thousands of tools.
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_TOOL_PAGES {
            let result = self.request(
                "tools/list",
                protocol::list_params(cursor.as_deref()),
                deadline,
                cancel,
            );
            let result = result.map_err(|e| {
                self.dispatch.tools_stale.store(true, Ordering::Release);
                // Only the first page can be "never sent" for the caller's purposes.
                if page > 0 { e.delivered() } else { e }
            })?;
            let (items, skipped, next) =
                protocol::parse_tools_page(&result).map_err(RequestError::Failed)?;
            left_out.extend(skipped);
            if let Some(ms) = result.get("ttlMs").and_then(Value::as_u64) {
                let d = Duration::from_millis(ms);
                ttl = Some(ttl.map_or(d, |t| t.min(d)));
            }
            for t in items {
                if !seen.insert(t.name.clone()) {
                    log::warn!(
                        "{}mcp[{}]: duplicate tool name {:?} ignored",
                        crate::mcp::logctx::prefix(),
                        self.name,
                        cut(&t.name, 80)
                    );
                } else {
                    tools.push(t);
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => {
                    if self.info.get().is_some_and(|i| i.modern) {
                        let ttl = match ttl {
                            Some(t) if !t.is_zero() => t.max(MIN_TOOLS_TTL),
                            _ => DEFAULT_TOOLS_TTL,
                        };
                        *self.tools_fresh_until.lock() = Some(listed_at + ttl);
                        tools = self.keep_valid_param_headers(tools, &mut left_out);
                    }
                    *self.left_out.lock() = Arc::new(left_out);
                    return Ok(tools);
                }
            }
        }
        Err(RequestError::Failed(Error::Protocol(format!(
            "tools/list still paging after {MAX_TOOL_PAGES} pages"
        ))))
    }

    /// `tools/call`, following 2026-07-28 `input_required` rounds that only carry a
    /// `requestState` (echoed byte for byte with a new request id; mrtr.mdx). Returns the raw
    /// final result.
    pub fn call_tool(
        &self,
        params: Value,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Value, RequestError> {
        let headers = self.param_headers_for(&params);
        let mut params = params;
        for n in 0..era::MAX_INPUT_ROUNDS {
            let result = self
                .request_with_headers(
                    "tools/call",
                    Some(params.clone()),
                    deadline,
                    Some(cancel),
                    &headers,
                )
                .map_err(|e| if n > 0 { e.delivered() } else { e })?;
            match era::round(&result) {
                Round::Complete => return Ok(result),
                Round::Again(state) => {
                    if let Value::Object(m) = &mut params {
                        m.insert("requestState".into(), state);
                    }
                }
                Round::Unanswerable(why) => {
                    return Err(RequestError::Failed(Error::Protocol(why)));
                }
            }
        }
        Err(RequestError::Failed(Error::Protocol(format!(
            "still input_required after {} rounds",
            era::MAX_INPUT_ROUNDS
        ))))
    }

    /// 2026-07-28: record each tool's `x-mcp-header` parameters; a tool whose annotations are
    /// invalid is dropped with a warning (SEP-2243: it MUST NOT be offered).
    fn keep_valid_param_headers(
        &self,
        tools: Vec<ToolInfo>,
        left_out: &mut Vec<LeftOut>,
    ) -> Vec<ToolInfo> {
        let mut map = HashMap::new();
        let kept = tools
            .into_iter()
            .filter(|t| match headers::param_headers(&t.input_schema) {
                Ok(params) => {
                    if !params.is_empty() {
                        map.insert(t.name.clone(), params);
                    }
                    true
                }
                Err(why) => {
                    left_out.push(LeftOut {
                        raw: t.raw.clone(),
                        reason: format!("invalid x-mcp-header annotations: {why}"),
                    });
                    log::warn!(
                        "{}mcp[{}]: leaving out tool {:?}: {why}",
                        crate::mcp::logctx::prefix(),
                        self.name,
                        cut(&t.name, 80)
                    );
                    false
                }
            })
            .collect();
        *self.param_headers.lock() = map;
        kept
    }

    /// The `Mcp-Param-*` headers of a `tools/call` (modern era, annotated tools only).
    fn param_headers_for(&self, params: &Value) -> Vec<(String, String)> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Vec::new();
        };
        let args = params.get("arguments").unwrap_or(&Value::Null);
        self.param_headers
            .lock()
            .get(name)
            .map(|p| headers::mirror(p, args))
            .unwrap_or_default()
    }

    /// Ping the server if it has been silent for `after` (legacy eras: 2026-07-28 has no
    /// ping) and nobody else is pinging it right now (ping.mdx: a timeout means the connection
    /// is dead). An error answer is still an answer. `Err` means the session is unusable.
    pub fn check_alive(&self, after: Duration, timeout: Duration) -> Result<(), Error> {
        let legacy = self.info.get().is_some_and(|i| !i.modern);
        if !legacy || self.dispatch.silent_for() < after {
            return Ok(());
        }
        if self.pinging.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let t0 = Instant::now();
        let r = self.request_once("ping", None, t0 + timeout, None);
        self.pinging.store(false, Ordering::Release);
        match r {
            Ok(_) | Err(RequestError::Rejected(_)) => {
                log::debug!(
                    "{}mcp[{}]: alive (ping {} ms)",
                    crate::mcp::logctx::prefix(),
                    self.name,
                    t0.elapsed().as_millis()
                );
                Ok(())
            }
            Err(e) => Err(e.into_error()),
        }
    }

    /// Whether the server announced a tool-list change since the last listing, or (modern
    /// era) the listing's time to live ran out.
    pub fn tools_stale(&self) -> bool {
        self.dispatch.tools_stale.load(Ordering::Acquire)
            || self
                .tools_fresh_until
                .lock()
                .is_some_and(|t| Instant::now() >= t)
    }

    /// Tools of the last complete listing that are not offered, with why.
    pub fn left_out(&self) -> Arc<Vec<LeftOut>> {
        self.left_out.lock().clone()
    }

    pub fn is_open(&self) -> bool {
        self.transport.is_open() && self.dispatch.pending.lock().closed.is_none()
    }

    /// Why the session ended, once it has.
    pub fn closed_reason(&self) -> Option<String> {
        self.dispatch.pending.lock().closed.clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.transport.pid()
    }

    /// How the server process ended, once it has (stdio).
    pub fn exit_status(&self) -> Option<String> {
        self.transport.exit_status()
    }

    /// Close the session (blocks until the server is gone; see [`Transport::close`]).
    pub fn close(&self, grace: Grace) {
        self.transport.close(grace);
    }
}

fn failure_error(f: Failure) -> RequestError {
    match f {
        Failure::Rpc(e) => RequestError::Rejected(e),
        Failure::Transport(RequestFailure::NotDelivered(r)) => {
            RequestError::NotSent(Error::Closed(r))
        }
        Failure::Transport(RequestFailure::Lost(r)) | Failure::Closed(r) => {
            RequestError::Failed(Error::Closed(r))
        }
        Failure::Transport(RequestFailure::Refused(r)) => RequestError::Failed(Error::Protocol(r)),
        Failure::Transport(RequestFailure::TooLarge(n)) => RequestError::Failed(Error::TooLarge(n)),
    }
}

#[cfg(test)]
mod tests;
