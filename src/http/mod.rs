//! aiproxy's own HTTP/1.1 server on `httparse`, built to sit on an edge box: every buffer,
//! queue, thread count and wait is bounded, and idle or slow clients never hold a thread.
//!
//! Thread model:
//! - one **poller** thread (`poller.rs`, epoll) owns the listener and every connection that is
//!   not being served: it accepts, reads heads and bodies without blocking (`conn.rs`,
//!   `parse.rs`, `body.rs`), enforces limits and timeouts, and admits complete requests (the
//!   listener defers accepts until a connection's first bytes came, for up to a second, so a
//!   new connection wakes the poller once, request included);
//! - **worker** threads (`worker.rs`) take complete requests from a bounded channel, run the
//!   synchronous [`Handler`] and write the response (`response.rs`; the socket stays
//!   non-blocking and each write waits at most `io_timeout` for room). A worker then waits up
//!   to `Limits::next_request_wait` (1 ms) for the connection's next request and serves it
//!   itself when it comes, belongs to its lane and finds room there (a client in a
//!   conversation asks again as soon as it has read the answer: no poller wake-up, no
//!   hand-off); otherwise it hands the connection back to the poller, with what it read of the
//!   next request. Connections are registered one-shot in the epoll set, so giving one
//!   to a worker needs no `epoll_ctl`, and a worker re-arms a kept-alive connection itself:
//!   the common hand-back wakes nobody. There are three pools, one per
//!   [`Lane`], each with its own queue: the handler's [`Handler::lane`] (asked on the poller with
//!   the method and path only) sends a request to the main pool (`Limits::workers`, admitted up
//!   to `max_in_flight`), to the **quick** pool (`quick_workers`, for answers that never block,
//!   such as liveness probes and metrics) or to the **control** pool (`control_workers`, for
//!   operator requests that may block). Traffic in the main pool can never take a quick or
//!   control worker, so those answer however long the main pool's requests run. Worker threads
//!   have a fixed small stack (`Limits::stack_size`), so thousands of them stay cheap.
//!
//! No panic stops serving: a worker turns a handler panic into a 500 (and survives any other
//! panic, closing that connection); the poller contains a panic while handling one event
//! (that connection is closed) and only gives up after a burst of them, and then calls
//! [`Hooks::poller_died`] so the process can exit and be restarted. [`Hooks::tick`] runs from
//! the poller loop for a liveness watchdog. Every module denies `clippy::string_slice` and
//! `clippy::indexing_slicing`: request bytes are untrusted, so no slice may panic.
//!
//! Limits: head bytes and header count → 431; body over `max_body_bytes` → 413 (declared length
//! checked before reading, chunked totals while decoding); head not complete within
//! `head_timeout` of its first byte, or body not complete within `io_timeout` of the head → 408;
//! idle keep-alive connections close after `idle_timeout`, new connections that send nothing
//! after `first_byte_timeout`; more than `max_in_flight` admitted main-lane requests (or
//! `lane_queue` in a quick or control lane), `max_connections` open connections or
//! `max_connections_per_ip` from one address → 503 with `Retry-After: 1`. Error responses
//! close the connection after a short linger (at most 1 s and 256 KiB discarded) so the client
//! reads the error rather than a reset. Linux only: the epoll/eventfd calls are in
//! [`crate::sys::net`]. Imports nothing else from the crate.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use log::{error, warn};
use parking_lot::Mutex;

mod body;
mod conn;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod parse;
mod peers;
mod poller;
mod queue;
mod response;
mod worker;

pub use limits::{DEFAULT_STACK_SIZE, Limits, MIN_STACK_SIZE};
pub use response::{BodyStream, Busy, Responder};

use conn::Conn;
use poller::{Control, Poller};
use queue::JobQueue;
use worker::Worker;

// The hand-off between the poller and the workers (defined here so neither imports the other).

/// State shared by the poller, the workers and [`Server`].
struct Shared {
    waker: crate::sys::net::Waker,
    /// The poller's epoll set: connections are registered one-shot, and a worker re-arms the
    /// connection it served itself (see `worker.rs`).
    epoll: crate::sys::net::Epoll,
    /// Set when shutdown begins: responses then say `Connection: close`.
    draining: AtomicBool,
    stats: Arc<HttpStats>,
    /// Requests admitted in the quick and control lanes (the main lane's count is
    /// `stats.in_flight`): the poller adds at admission, the worker subtracts when done.
    side_busy: [AtomicUsize; 2],
    /// The server's limits: the workers read a connection's next request under them too, and
    /// each write of a response waits at most `io_timeout` for room.
    limits: Limits,
}

impl Shared {
    /// Requests admitted in `lane` (running + queued).
    fn busy(&self, lane: Lane) -> &AtomicUsize {
        match lane {
            Lane::Main => &self.stats.in_flight,
            Lane::Quick => &self.side_busy[0],
            Lane::Control => &self.side_busy[1],
        }
    }
}

/// A complete request, admitted by the poller and waiting for a worker.
struct Job {
    lane: Lane,
    conn: Conn,
    request: Request,
    keep_alive: bool,
    head_only: bool,
}

/// A served connection going back from a worker to the poller. The worker has already
/// counted the request out of its lane.
struct Done {
    id: u64,
    /// `None` when serving panicked outside the handler and the connection was dropped.
    conn: Option<Conn>,
    keep_alive: bool,
    /// The worker re-armed the socket in the epoll set itself (kept alive, nothing buffered):
    /// the poller only files the connection, and was not woken for it.
    armed: bool,
    /// What the worker read of the connection's next request and left to the poller (a
    /// request of another lane, or one its lane has no room for; a malformed one): the poller
    /// acts on it as if it had read those bytes itself.
    next: Option<conn::Advance>,
}

impl Done {
    /// A connection dropped (closed) after a panic on the worker.
    fn lost(id: u64) -> Done {
        Done {
            id,
            conn: None,
            keep_alive: false,
            armed: false,
            next: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A fully read request (head + body, body bounded by `max_body_bytes`).
/// `Debug` shows credentials headers as `***` and the body as its length, so logging a request
/// never leaks a key.
pub struct Request {
    pub method: String,
    /// Path without the query string, percent-decoding NOT applied. For an absolute-form
    /// target (`http://host/p`) only the path is kept.
    pub path: String,
    /// The raw query string without `?` ("" when none).
    pub query: String,
    pub version: Version,
    /// Header names as sent; look up with [`Request::header`]. Values are trimmed; bytes that
    /// are not UTF-8 are replaced with U+FFFD.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked framing removed, trailers dropped).
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Request {
    /// First header with this name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Headers whose values are credentials.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
];

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_HEADERS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (k.as_str(), if secret { "***" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("version", &self.version)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("peer", &self.peer)
            .finish()
    }
}

/// Runs on a worker thread, once per request. It must answer through `resp` (a handler that
/// returns without answering gets a 500); a panic is caught and becomes a 500 plus a close.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request, resp: &mut Responder<'_>);

    /// Which pool serves a request with this method and path (default: the main pool). Runs
    /// on the poller thread for every request, before the body is read when the client asks
    /// for `100 Continue`: it must be cheap and must not block.
    fn lane(&self, _method: &str, _path: &str) -> Lane {
        Lane::Main
    }

    /// Whether the poller answers this request itself, on its own thread, instead of queueing
    /// it for its lane (default: no). Only for requests whose answer reads memory and fits in
    /// one small write (liveness and readiness probes): the poller runs `handle` for them, so
    /// a probe never waits for a worker thread to be scheduled, however many are runnable.
    /// The answer's writes never wait for room; pipelined requests, a drain, and everything
    /// else go to their lane. Cheap and non-blocking, as [`Handler::lane`].
    fn answered_by_poller(&self, _method: &str, _path: &str) -> bool {
        false
    }
}

/// A worker pool with its own threads and queue; see [`Handler::lane`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `Limits::workers` threads, up to `max_in_flight` requests admitted (running + queued).
    Main,
    /// `Limits::quick_workers` threads for requests answered at once without blocking (probes,
    /// metrics); up to `lane_queue` admitted. Never behind a main-lane request.
    Quick,
    /// `Limits::control_workers` threads for operator requests that may block for a while;
    /// up to `lane_queue` admitted. Never behind a main-lane or quick-lane request.
    Control,
}

impl Lane {
    const ALL: [Lane; 3] = [Lane::Main, Lane::Quick, Lane::Control];

    fn index(self) -> usize {
        match self {
            Lane::Main => 0,
            Lane::Quick => 1,
            Lane::Control => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Main => "worker",
            Lane::Quick => "quick",
            Lane::Control => "control",
        }
    }
}

/// Live numbers of a running server for `/metrics`: the in-flight gauge moves at every
/// admission and completion, the connection gauge is refreshed once per poller loop iteration,
/// the shed counter bumped at every 503 the poller answers for a limit.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Main-lane requests admitted (running + queued).
    in_flight: AtomicUsize,
    open_connections: AtomicUsize,
    shed: AtomicU64,
    max_in_flight: usize,
}

impl HttpStats {
    /// (main-lane requests in flight, open connections, requests and connections shed so far).
    pub fn read(&self) -> (usize, usize, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.open_connections.load(Ordering::Relaxed),
            self.shed.load(Ordering::Relaxed),
        )
    }
}

/// A callback run on the poller thread.
pub type TickFn = Arc<dyn Fn() + Send + Sync>;
/// Called with the reason when the poller thread stops for good.
pub type DiedFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Callbacks from the poller thread, for process supervision (keep them cheap: they run on
/// the thread that serves every connection).
#[derive(Clone, Default)]
pub struct Hooks {
    /// `(every, f)`: `f` runs on the poller loop at least once per `every` while the loop
    /// turns (a liveness signal, e.g. a systemd watchdog ping). A wedged poller stops calling it.
    pub tick: Option<(Duration, TickFn)>,
    /// Runs once if the poller thread stops because of a bug (panics it could not contain).
    /// The server then accepts nothing more, so a process should exit here to be restarted.
    pub poller_died: Option<DiedFn>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("tick", &self.tick.as_ref().map(|(every, _)| every))
            .field("poller_died", &self.poller_died.is_some())
            .finish()
    }
}

/// A running server. Dropping it without [`Server::shutdown`] stops it without draining.
pub struct Server {
    local_addr: SocketAddr,
    control: Sender<Control>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The result of the first shutdown, returned again by later calls.
    outcome: Mutex<Option<bool>>,
}

impl Server {
    /// Start serving on an already bound listener. Returns at once; threads run in background.
    pub fn start(
        listener: TcpListener,
        limits: Limits,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        Server::start_with(listener, limits, handler, Hooks::default())
    }

    /// [`Server::start`] with supervision callbacks.
    pub fn start_with(
        listener: TcpListener,
        limits: Limits,
        handler: Arc<dyn Handler>,
        hooks: Hooks,
    ) -> io::Result<Server> {
        limits.validate()?;
        let local_addr = listener.local_addr()?;
        // As many new clients may queue as may be connected at once.
        crate::sys::net::set_accept_backlog(&listener, limits.max_connections)?;
        // New connections wake the poller once, with their request (1 s: a silent client is
        // then accepted and timed out as before, only a second later).
        if let Err(e) = crate::sys::net::set_defer_accept(&listener, 1) {
            log::debug!("TCP_DEFER_ACCEPT not set: {e}");
        }
        let shared = Arc::new(Shared {
            waker: crate::sys::net::Waker::new()?,
            epoll: crate::sys::net::Epoll::new()?,
            draining: AtomicBool::new(false),
            stats: Arc::new(HttpStats {
                max_in_flight: limits.max_in_flight,
                ..HttpStats::default()
            }),
            side_busy: [AtomicUsize::new(0), AtomicUsize::new(0)],
            limits: limits.clone(),
        });
        // Capacity = admission limit of the lane, so the poller's `try_send` only fails if it
        // is broken; the done channel holds one message per admitted request of any lane.
        let lanes = Lane::ALL.map(|lane| (lane, Arc::new(JobQueue::new(limits.admitted(lane)))));
        let (done_tx, done_rx) = bounded(Lane::ALL.iter().map(|l| limits.admitted(*l)).sum());
        let (control_tx, control_rx) = bounded(1);
        let poller = Poller::new(
            listener,
            limits.clone(),
            lanes.clone().map(|(_, queue)| queue),
            done_rx,
            control_rx,
            Arc::clone(&shared),
            (Arc::clone(&handler), hooks.tick),
        )?;
        let poller_died = hooks.poller_died;

        let mut threads = Vec::with_capacity(limits.threads() + 1);
        for (lane, jobs) in lanes {
            for i in 0..limits.workers_of(lane) {
                let worker = Worker {
                    handler: Arc::clone(&handler),
                    jobs: Arc::clone(&jobs),
                    done: done_tx.clone(),
                    shared: Arc::clone(&shared),
                };
                // On error `poller` is dropped with the job senders, so started workers exit.
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("http-{}-{i}", lane.name()))
                        .stack_size(limits.stack_size)
                        .spawn(move || {
                            if lane != Lane::Main {
                                ask_for_short_slices();
                            }
                            worker.run()
                        })?,
                );
            }
        }
        threads.insert(
            0,
            std::thread::Builder::new()
                .name("http-poller".into())
                .spawn(move || {
                    ask_for_short_slices();
                    // `run` contains panics of single events; this catches the rest.
                    let why = match catch_unwind(AssertUnwindSafe(|| poller.run())) {
                        Ok(Ok(())) => return,
                        Ok(Err(why)) => why,
                        Err(payload) => panic_message(payload.as_ref()),
                    };
                    error!("http poller stopped: {why}; no more connections are accepted");
                    if let Some(died) = poller_died {
                        died(&why);
                    }
                })?,
        );
        Ok(Server {
            local_addr,
            control: control_tx,
            shared,
            threads,
            outcome: Mutex::new(None),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Live counters (in flight, open connections, shed), for metrics.
    pub fn stats(&self) -> Arc<HttpStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Stop accepting (the listener is closed), close idle connections, let in-flight requests
    /// and streams finish up to `drain`, then shut the remaining sockets (their handlers' next
    /// write fails). Returns true when everything finished in time. Later calls return the
    /// first result.
    pub fn shutdown(&self, drain: Duration) -> bool {
        let mut outcome = self.outcome.lock();
        if let Some(done) = *outcome {
            return done;
        }
        let (reply_tx, reply_rx) = bounded(1);
        let finished = match self.control.try_send(Control::Shutdown {
            drain,
            reply: reply_tx,
        }) {
            Ok(()) => {
                self.shared.waker.wake();
                // The poller answers at the drain deadline at the latest; the margin covers
                // one loop iteration.
                reply_rx
                    .recv_timeout(drain + Duration::from_secs(2))
                    .unwrap_or_else(|_| {
                        warn!("http server did not confirm shutdown");
                        false
                    })
            }
            Err(_) => false,
        };
        *outcome = Some(finished);
        finished
    }

    /// Block until the poller and all workers have exited (after [`Server::shutdown`]; a worker
    /// exits once its handler returns).
    pub fn join(mut self) {
        for t in std::mem::take(&mut self.threads) {
            if t.join().is_err() {
                warn!("http server thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.outcome.lock().is_none() {
            let (reply, _) = bounded(1);
            let _ = self.control.try_send(Control::Shutdown {
                drain: Duration::ZERO,
                reply,
            });
            self.shared.waker.wake();
        }
    }
}

/// The message of a caught panic.
/// Scheduler time slice asked for by the control-plane threads (the poller, the quick and
/// control lanes): their work comes in short bursts, and with a short slice a waking one
/// preempts a busy stream worker instead of queueing behind it (Linux ≥ 6.12; see
/// `sys::process::request_short_slice`). Measured at 1,000 streams on two cores: `/health`
/// p99 24–30 ms with the default slice, 14–16 ms with this one (bench/NOTES.md).
const CONTROL_SLICE: Duration = Duration::from_micros(100);

fn ask_for_short_slices() {
    if let Err(e) = crate::sys::process::request_short_slice(CONTROL_SLICE) {
        log::debug!("cannot ask for short scheduler slices: {e}");
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_hides_credentials_and_body() {
        let req = Request {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            query: String::new(),
            version: Version::Http11,
            headers: vec![
                ("Authorization".into(), "Bearer sk-secret".into()),
                ("X-Api-Key".into(), "k-secret".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: b"{\"messages\":\"private\"}".to_vec(),
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("private"),
            "{shown}"
        );
        assert!(
            shown.contains("application/json") && shown.contains("body_len: 22"),
            "{shown}"
        );
        assert_eq!(req.header("authorization"), Some("Bearer sk-secret"));
    }

    #[test]
    fn limits_are_validated() {
        assert!(Limits::default().validate().is_ok());
        assert!(
            Limits {
                workers: 0,
                ..Limits::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Limits {
                max_headers: 0,
                ..Limits::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Limits {
                idle_timeout: Duration::ZERO,
                ..Limits::default()
            }
            .validate()
            .is_err()
        );
    }
}
