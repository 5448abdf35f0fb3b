//! The dispatcher: the client's side of a transport's threads. It routes each reply to the
//! caller waiting for its id, answers server→client requests (`ping` → `{}`, everything else →
//! -32601, never left hanging), notes `notifications/tools/list_changed`, fails the one waiter
//! whose reply was too large to keep (or counts it, when its id could not be seen), and fails
//! every waiter at once when the connection dies.
//!
//! Thread model: called from the transport's threads; never blocks (bounded(1) reply channels,
//! one reply per id); the pending map is locked only to insert, look up or remove an entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};

use super::jsonrpc::{Id, METHOD_NOT_FOUND, Message, RpcError};
use super::protocol::cut;
use super::transport::{Inbound, Outbound, RequestFailure};

/// Budget for answers to server requests.
const ANSWER_WRITE: Duration = Duration::from_secs(2);

/// What a waiter receives instead of a result.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Failure {
    Rpc(RpcError),
    Transport(RequestFailure),
    Closed(String),
}

pub(super) type Reply = Result<Value, Failure>;

/// Where one request's reply is delivered: put once by a transport thread, taken by the
/// caller waiting for it. A caller parks at once (a channel's receive spins and yields first:
/// about two `sched_yield`s per tool call).
#[derive(Default)]
pub(super) struct ReplySlot {
    reply: Mutex<Option<Reply>>,
    ready: Condvar,
}

impl ReplySlot {
    /// Deliver the reply (only the first one counts).
    fn put(&self, reply: Reply) {
        let mut slot = self.reply.lock();
        if slot.is_none() {
            *slot = Some(reply);
        }
        drop(slot);
        self.ready.notify_one();
    }

    /// The reply, waiting for it at most `wait`.
    pub(super) fn take(&self, wait: Duration) -> Option<Reply> {
        let mut slot = self.reply.lock();
        if slot.is_none() {
            self.ready.wait_for(&mut slot, wait);
        }
        slot.take()
    }
}

#[derive(Default)]
pub(super) struct Pending {
    pub(super) waiters: HashMap<i64, Arc<ReplySlot>>,
    /// Set once the transport is gone; no new waiter is registered after that.
    pub(super) closed: Option<String>,
}

/// The client side of the transport's threads: routes replies, answers server requests.
pub(super) struct Dispatcher {
    name: String,
    pub(super) pending: Mutex<Pending>,
    pub(super) tools_stale: AtomicBool,
    born: Instant,
    /// When the server last sent anything, in ms since `born` (liveness).
    last_heard_ms: AtomicU64,
    /// Oversized messages discarded without a recognisable id: a call waiting for a reply
    /// while this grows may be the one they answered (its timeout then says so).
    pub(super) unmatched_oversized: AtomicU64,
}

/// We only send integer ids; a server that echoes them as strings is tolerated.
fn id_key(id: &Id) -> Option<i64> {
    match id {
        Id::Int(n) => Some(*n),
        Id::Str(s) => s.parse().ok(),
    }
}

impl Dispatcher {
    pub(super) fn new(name: &str) -> Dispatcher {
        Dispatcher {
            name: name.to_string(),
            pending: Mutex::new(Pending::default()),
            tools_stale: AtomicBool::new(false),
            born: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            unmatched_oversized: AtomicU64::new(0),
        }
    }

    /// How long the server has been silent.
    pub(super) fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.last_heard_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(heard)
    }

    fn route(&self, id: &Id, reply: Reply) {
        let waiter = id_key(id).and_then(|k| self.pending.lock().waiters.remove(&k));
        match waiter {
            Some(slot) => slot.put(reply),
            None => log::debug!(
                "mcp[{}]: dropping a reply to unknown or abandoned request {id}",
                self.name
            ),
        }
    }

    fn answer(&self, id: Id, method: &str, out: &dyn Outbound) {
        let reply = if method == "ping" {
            Message::Response {
                id,
                result: json!({}),
            }
        } else {
            log::debug!(
                "mcp[{}]: refusing server request {}",
                self.name,
                cut(method, 80)
            );
            Message::error(Some(id), METHOD_NOT_FOUND, "Method not found")
        };
        if let Err(e) = out.send(&reply, Instant::now() + ANSWER_WRITE) {
            log::debug!(
                "mcp[{}]: could not answer {}: {e}",
                self.name,
                cut(method, 80)
            );
        }
    }
}

impl Inbound for Dispatcher {
    fn on_message(&self, msg: Message, out: &dyn Outbound) {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_heard_ms.store(now, Ordering::Relaxed);
        match msg {
            Message::Response { id, result } => self.route(&id, Ok(result)),
            Message::Error {
                id: Some(id),
                error,
            } => self.route(&id, Err(Failure::Rpc(error))),
            Message::Error { id: None, error } => log::warn!(
                "mcp[{}]: server reported an error for no request: {} {}",
                self.name,
                error.code,
                cut(&error.message, 200)
            ),
            Message::Request { id, method, .. } => self.answer(id, &method, out),
            Message::Notification { method, params } => match method.as_str() {
                "notifications/tools/list_changed" => {
                    log::debug!("mcp[{}]: tool list changed", self.name);
                    self.tools_stale.store(true, Ordering::Release);
                }
                // We never ask for progress; a server may still send it (also for requests we
                // cancelled, notes A.8): nothing waits for it, so it is dropped.
                "notifications/progress" => {}
                "notifications/message" => {
                    let data = params
                        .as_ref()
                        .map(|p| cut(&p.to_string(), 300))
                        .unwrap_or_default();
                    log::debug!("mcp[{}] log: {data}", self.name);
                }
                other => log::trace!(
                    "mcp[{}]: ignoring notification {}",
                    self.name,
                    cut(other, 80)
                ),
            },
        }
    }

    fn on_request_failed(&self, id: &Id, failure: RequestFailure) {
        self.route(id, Err(Failure::Transport(failure)));
    }

    fn wants(&self, id: &Id) -> bool {
        id_key(id).is_some_and(|k| self.pending.lock().waiters.contains_key(&k))
    }

    fn on_oversized(&self, id: Option<&Id>, limit: usize) {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_heard_ms.store(now, Ordering::Relaxed);
        match id {
            Some(id) if self.wants(id) => {
                self.route(id, Err(Failure::Transport(RequestFailure::TooLarge(limit))));
            }
            _ => {
                self.unmatched_oversized.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn on_closed(&self, reason: &str) {
        let waiters = {
            let mut p = self.pending.lock();
            p.closed = Some(reason.to_string());
            std::mem::take(&mut p.waiters)
        };
        for (_, slot) in waiters {
            slot.put(Err(Failure::Closed(reason.to_string())));
        }
    }
}
