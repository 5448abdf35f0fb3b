//! The poller: one thread with an epoll loop that owns the listener and every connection not
//! being served. It accepts, reads heads and bodies without blocking, enforces the limits and
//! timeouts, admits complete requests to the worker pool (or sheds them with 503), answers the
//! probes its handler marks (`Handler::answered_by_poller`) itself, takes served connections
//! back for keep-alive, and runs the shutdown drain.
//!
//! Thread model: everything here runs on the poller thread. Workers talk to it only through the
//! bounded `Done` channel, plus the eventfd `Waker` or a re-armed one-shot registration in the
//! shared epoll set (see `worker.rs`), and the lane counts in `Shared`; `Server` talks to it
//! through the control channel. Idle and slow connections therefore cost a table entry and a buffer, never a thread.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, warn};

use super::Limits;
use super::conn::{Advance, Conn, READ_CHUNK, Ready, State};
use super::parse::Reject;
use super::peers::PeerTable;
use super::queue::JobQueue;
use super::response::{CONTINUE_100, error_response};
use super::worker::answer;
use super::{Done, Handler, Job, Lane, Shared};
use crate::sys::net::{is_per_connection_error, write_now};

const LISTENER: u64 = 0;
const WAKER: u64 = 1;
const FIRST_CONN_ID: u64 = 2;
/// Accepts per readiness event, so a connection flood cannot starve the other sockets.
const ACCEPT_BATCH: usize = 64;
/// Reads per readiness event for one connection (level-triggered: the rest comes next round).
const READS_PER_EVENT: usize = 4;
/// How long the listener rests after EMFILE/ENFILE/ENOMEM/ENOBUFS instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// After an error response: at most this long and this many discarded bytes before closing.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
const OVERLOADED: &str = "server overloaded, retry shortly";
/// Longest sleep in `epoll_wait` when no deadline is nearer.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Longest sleep while draining, to see requests finish (a worker that re-armed a kept-alive
/// connection just before the drain began does not wake the poller).
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// The poller gives up (and reports itself dead) after this many panics within the window.
const MAX_PANICS: usize = 50;
const PANIC_WINDOW: Duration = Duration::from_secs(10);

mod drain;

pub(super) enum Control {
    /// Stop accepting, drain in-flight requests for up to `drain`, report whether all finished.
    Shutdown {
        drain: Duration,
        reply: Sender<bool>,
    },
}

/// `Hooks::tick` with its schedule.
struct Tick {
    every: Duration,
    next: Instant,
    f: super::TickFn,
}

pub(super) struct Poller {
    tick: Option<Tick>,
    peers: Arc<PeerTable>,
    listener: Option<TcpListener>,
    listener_paused_until: Option<Instant>,
    limits: Limits,
    conns: HashMap<u64, Conn>,
    /// Sockets of connections currently with a worker (counted against both caps).
    in_flight: HashMap<u64, Arc<TcpStream>>,
    next_id: u64,
    /// Per lane: the job queue (closed when the poller is dropped, so workers exit).
    lanes: [Arc<JobQueue>; 3],
    /// Asked which lane serves each request.
    router: Arc<dyn Handler>,
    done: Receiver<Done>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
    next_timer: Instant,
    drain: Option<(Instant, Sender<bool>)>,
    scratch: Vec<u8>,
}

impl Drop for Poller {
    /// The poller is gone (shutdown, or a start that failed): workers finish what is queued
    /// and exit.
    fn drop(&mut self) {
        for queue in &self.lanes {
            queue.close();
        }
    }
}

impl Poller {
    pub(super) fn new(
        listener: TcpListener,
        limits: Limits,
        lanes: [Arc<JobQueue>; 3],
        done: Receiver<Done>,
        control: Receiver<Control>,
        shared: Arc<Shared>,
        (router, tick): (Arc<dyn Handler>, Option<(Duration, super::TickFn)>),
    ) -> io::Result<Poller> {
        listener.set_nonblocking(true)?;
        shared.epoll.add(listener.as_raw_fd(), LISTENER)?;
        shared.epoll.add(shared.waker.raw_fd(), WAKER)?;
        let conns = HashMap::with_capacity(limits.max_connections.min(1024));
        let tick = tick.map(|(every, f)| Tick {
            // Never spin: at most one tick per millisecond.
            every: every.max(Duration::from_millis(1)),
            next: Instant::now(),
            f,
        });
        Ok(Poller {
            tick,
            peers: PeerTable::new(limits.max_connections_per_ip),
            listener: Some(listener),
            listener_paused_until: None,
            limits,
            conns,
            in_flight: HashMap::new(),
            next_id: FIRST_CONN_ID,
            lanes,
            router,
            done,
            control,
            shared,
            next_timer: Instant::now() + MAX_WAIT,
            drain: None,
            scratch: vec![0; READ_CHUNK],
        })
    }

    /// The event loop; returns after a shutdown completed (or the `Server` was dropped).
    /// `Err` only when panics kept coming (a bug the poller cannot get past): the caller
    /// reports it through `Hooks::poller_died`.
    pub(super) fn run(mut self) -> Result<(), String> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut panics: VecDeque<Instant> = VecDeque::with_capacity(MAX_PANICS);
        loop {
            // A panic while handling one event drops what that step held (a connection taken
            // out of the table is closed) and the loop goes on. Only a burst of them, which
            // means every turn fails, stops the poller.
            match catch_unwind(AssertUnwindSafe(|| self.turn(&mut events))) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(payload) => {
                    let why = super::panic_message(payload.as_ref());
                    error!("http poller: contained a panic: {why}");
                    let now = Instant::now();
                    while panics
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > PANIC_WINDOW)
                    {
                        panics.pop_front();
                    }
                    panics.push_back(now);
                    if panics.len() >= MAX_PANICS {
                        return Err(format!(
                            "{MAX_PANICS} panics within {PANIC_WINDOW:?}, the last: {why}"
                        ));
                    }
                }
            }
        }
    }

    /// One loop iteration; false when the loop should end.
    fn turn(&mut self, events: &mut [libc::epoll_event]) -> bool {
        let mut wake_at = self.next_timer;
        if let Some(tick) = &mut self.tick {
            wake_at = wake_at.min(tick.next);
        }
        let mut wait = wake_at.saturating_duration_since(Instant::now());
        if self.drain.is_some() {
            // Workers hand back kept-alive connections without waking the poller.
            wait = wait.min(DRAIN_POLL);
        }
        // Round up so we do not wake just before a deadline and spin until it passes.
        let timeout_ms = i32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let n = match self.shared.epoll.wait(events, timeout_ms) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => {
                warn!("epoll_wait failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                0
            }
        };
        // Before the events: a served connection's next request can be among them (the worker
        // queued the connection before re-arming its socket).
        self.take_back_served();
        for ev in events.get(..n).unwrap_or_default() {
            let token = ev.u64;
            match token {
                LISTENER => self.accept_ready(),
                WAKER => self.shared.waker.drain(),
                id => self.conn_ready(id),
            }
        }
        if !self.poll_control() {
            return false;
        }
        let now = Instant::now();
        if now >= self.next_timer {
            self.sweep();
        }
        if let Some(tick) = &mut self.tick
            && now >= tick.next
        {
            tick.next = now + tick.every;
            (tick.f)();
        }
        if self.drain_finished() {
            return false;
        }
        self.publish_open_connections(0);
        true
    }

    /// The open-connections gauge: those the poller holds, those being served, and `handing`
    /// more about to be handed to a worker.
    fn publish_open_connections(&self, handing: usize) {
        let open = self.conns.len() + self.in_flight.len() + handing;
        (self.shared.stats.open_connections).store(open, Ordering::Relaxed);
    }

    fn count_shed(&self) {
        self.shared.stats.shed.fetch_add(1, Ordering::Relaxed);
    }

    fn accept_ready(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit_connection(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_per_connection_error(&e) => debug!("accept: {e}"),
                Err(e) => {
                    // Out of descriptors or memory: the pending connection stays queued, so
                    // level-triggered epoll would report it again at once. Rest instead.
                    warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.pause_listener();
                    return;
                }
            }
        }
    }

    fn pause_listener(&mut self) {
        if let Some(listener) = &self.listener {
            if let Err(e) = self.shared.epoll.delete(listener.as_raw_fd()) {
                warn!("cannot pause listener: {e}");
            }
            let until = Instant::now() + ACCEPT_BACKOFF;
            self.listener_paused_until = Some(until);
            self.arm(until);
        }
    }

    fn admit_connection(&mut self, stream: TcpStream, peer: SocketAddr) {
        if let Err(e) = stream.set_nonblocking(true) {
            debug!("{peer}: cannot set non-blocking: {e}");
            return;
        }
        if self.conns.len() + self.in_flight.len() >= self.limits.max_connections {
            debug!("{peer}: connection limit reached, refusing");
            self.refuse(&stream, "too many connections, retry shortly");
            return;
        }
        let Some(slot) = self.peers.acquire(peer.ip()) else {
            debug!("{peer}: per-address connection limit reached, refusing");
            self.refuse(&stream, "too many connections from this address");
            return;
        };
        // Small writes (SSE events) must leave at once rather than wait for an ACK (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{peer}: cannot set socket options: {e}");
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self.shared.epoll.add_oneshot(stream.as_raw_fd(), id) {
            warn!("{peer}: cannot register connection: {e}");
            return;
        }
        debug!("conn {id}: accepted from {peer}");
        let conn = Conn::new(id, stream, peer, slot, Instant::now());
        // A client sends its request as it connects, so it is often here already: read it now
        // rather than on the next wake-up (the registration stays armed for what comes later).
        if let Some(conn) = self.read_and_advance(conn) {
            self.arm(conn.deadline(&self.limits));
            self.conns.insert(id, conn);
        }
    }

    /// Answer a connection over a limit with 503 and close it.
    fn refuse(&mut self, stream: &TcpStream, message: &str) {
        self.count_shed();
        write_now(stream, &error_response(503, message));
        let _ = stream.shutdown(Shutdown::Write);
        // Closing with unread input sends a reset, which can destroy the 503 in flight;
        // swallow the request bytes already here (one read, never blocking).
        let _ = (&*stream).read(&mut self.scratch);
    }

    fn conn_ready(&mut self, id: u64) {
        // Events for a connection that just went to a worker (same batch) are stale: ignore.
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(conn) = self.read_and_advance(conn) {
            self.keep(conn);
        }
    }

    /// File a connection that stays with the poller, its one-shot registration armed again.
    fn keep(&mut self, conn: Conn) {
        if let Err(e) = self.shared.epoll.rearm(conn.stream.as_raw_fd(), conn.id) {
            debug!("conn {}: cannot re-arm: {e}", conn.id);
            return;
        }
        self.arm(conn.deadline(&self.limits));
        self.conns.insert(conn.id, conn);
    }

    /// Read what the connection may read now and act on it. `None`: the connection left the
    /// table (dispatched to a worker or closed).
    fn read_and_advance(&mut self, mut conn: Conn) -> Option<Conn> {
        for _ in 0..READS_PER_EVENT {
            let budget = conn.read_budget(&self.limits);
            // `read_budget` is at most READ_CHUNK, the scratch size.
            let Some(scratch) = self.scratch.get_mut(..budget) else {
                return Some(conn);
            };
            let n = match (&*conn.stream).read(scratch) {
                Ok(0) => {
                    debug!("conn {}: closed by peer", conn.id);
                    return None;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(conn),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("conn {}: read error: {e}", conn.id);
                    return None;
                }
            };
            if let State::Linger { discarded, .. } = &mut conn.state {
                *discarded += n;
                if *discarded > LINGER_BYTES {
                    debug!(
                        "conn {}: closing after discarding {} bytes",
                        conn.id, *discarded
                    );
                    return None;
                }
                continue;
            }
            conn.buf
                .extend_from_slice(self.scratch.get(..n).unwrap_or_default());
            conn = self.advance(conn)?;
        }
        Some(conn)
    }

    /// Act on what the buffered bytes complete.
    fn advance(&mut self, mut conn: Conn) -> Option<Conn> {
        let step = conn.advance(&self.limits, Instant::now());
        self.act(conn, step)
    }

    /// Act on one step of a connection's request: keep reading, admit it, or refuse it.
    fn act(&mut self, conn: Conn, step: Advance) -> Option<Conn> {
        match step {
            Advance::NeedMore => Some(conn),
            Advance::SendContinue => {
                // Already saturated: refuse now rather than have the client upload a body that
                // will be refused anyway.
                let lane = conn
                    .pending_head()
                    .map_or(Lane::Main, |(method, path)| self.router.lane(method, path));
                if self.lane_full(lane) {
                    self.count_shed();
                    return self.reject(conn, Reject::new(503, OVERLOADED));
                }
                if write_now(&conn.stream, CONTINUE_100) {
                    Some(conn)
                } else {
                    debug!("conn {}: cannot send 100 Continue", conn.id);
                    None
                }
            }
            Advance::Reject(reject) => self.reject(conn, reject),
            Advance::Ready(ready) => self.dispatch(conn, *ready),
        }
    }

    /// True when `lane` admits no more requests.
    fn lane_full(&self, lane: Lane) -> bool {
        self.shared.busy(lane).load(Ordering::Acquire) >= self.limits.admitted(lane)
    }

    /// Answer a probe here (`Handler::answered_by_poller`), or admit a complete request to
    /// its lane's pool, or shed it with 503.
    fn dispatch(&mut self, conn: Conn, ready: Ready) -> Option<Conn> {
        // Pipelined requests behind it go to the lane: the poller answers one at a time.
        if conn.buf.is_empty()
            && self.drain.is_none()
            && self
                .router
                .answered_by_poller(&ready.request.method, &ready.request.path)
        {
            return self.answer_here(conn, ready);
        }
        let lane = self.router.lane(&ready.request.method, &ready.request.path);
        if self.lane_full(lane) || self.drain.is_some() {
            debug!("conn {}: {lane:?} lane full, answering 503", conn.id);
            self.count_shed();
            return self.reject(conn, Reject::new(503, OVERLOADED));
        }
        // The worker owns the socket now; its one-shot registration fired and stays disarmed
        // until the worker re-arms it.
        let (id, stream) = (conn.id, Arc::clone(&conn.stream));
        let Ready {
            request,
            keep_alive,
            head_only,
        } = ready;
        let jobs = self.lanes.get(lane.index())?;
        // Counted before a worker can see it, so a `/metrics` scrape counts its own connection
        // (accepted, read and handed over in one turn since accepts are deferred).
        self.publish_open_connections(1);
        match jobs.push(Job {
            lane,
            conn,
            request,
            keep_alive,
            head_only,
        }) {
            Ok(()) => {
                self.in_flight.insert(id, stream);
                // The worker counts it out when done (it may already have).
                self.shared.busy(lane).fetch_add(1, Ordering::AcqRel);
                None
            }
            // Unreachable while the lane's count < its admission limit = queue capacity;
            // shed anyway.
            Err(job) => {
                warn!("conn {id}: job queue unavailable, answering 503");
                self.count_shed();
                write_now(&job.conn.stream, &error_response(503, OVERLOADED));
                None
            }
        }
    }

    /// Run the handler on a probe on this thread; the connection stays here if kept alive.
    fn answer_here(&mut self, mut conn: Conn, ready: Ready) -> Option<Conn> {
        let Ready {
            request,
            keep_alive,
            head_only,
        } = ready;
        let handler = &*self.router;
        let keep_alive = answer(
            handler,
            &conn.stream,
            request,
            (keep_alive, head_only),
            &self.shared,
            true,
        );
        if !keep_alive {
            debug!("conn {}: closing after the poller's answer", conn.id);
            return None;
        }
        conn.reset_for_next(Instant::now());
        Some(conn)
    }

    /// Send an error response, shut our side, and linger briefly before closing.
    fn reject(&mut self, mut conn: Conn, reject: Reject) -> Option<Conn> {
        debug!(
            "conn {}: rejecting with {} ({})",
            conn.id, reject.status, reject.message
        );
        let sent = write_now(&conn.stream, &error_response(reject.status, reject.message));
        let _ = conn.stream.shutdown(Shutdown::Write);
        if !sent || self.drain.is_some() {
            return None;
        }
        conn.buf = Vec::new();
        conn.state = State::Linger {
            until: Instant::now() + LINGER_TIME,
            discarded: 0,
        };
        Some(conn)
    }

    /// Take back connections whose response is done: close them, act on what their worker
    /// read of the next request, or wait for it.
    fn take_back_served(&mut self) {
        while let Ok(Done {
            id,
            conn,
            keep_alive,
            armed,
            next,
        }) = self.done.try_recv()
        {
            self.in_flight.remove(&id);
            // `None`: the worker lost the connection to a panic (it is closed).
            let Some(conn) = conn else {
                continue;
            };
            if !keep_alive || self.drain.is_some() {
                debug!("conn {}: closing after response", conn.id);
                continue;
            }
            // The worker has reset the connection for its next request.
            if armed {
                // Nothing buffered, and the worker re-armed the socket.
                self.arm(conn.deadline(&self.limits));
                self.conns.insert(conn.id, conn);
                continue;
            }
            // What the worker read, or pipelined bytes already buffered, come before anything
            // new is read.
            let kept = match next {
                Some(step) => self.act(conn, step),
                None => self.advance(conn),
            };
            if let Some(conn) = kept {
                self.keep(conn);
            }
        }
    }

    /// Time out connections, resume a paused listener, and schedule the next sweep.
    fn sweep(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline(&self.limits) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(conn) = self.conns.remove(&id) else {
                continue;
            };
            let kept = match conn.state {
                State::Head { .. } | State::Body(_) => {
                    self.reject(conn, Reject::new(408, "request not received in time"))
                }
                State::Idle { .. } | State::Linger { .. } => {
                    debug!("conn {id}: timed out, closing");
                    None
                }
            };
            if let Some(conn) = kept {
                self.conns.insert(id, conn);
            }
        }
        if self.listener_paused_until.is_some_and(|t| t <= now) {
            self.listener_paused_until = None;
            if let Some(listener) = &self.listener
                && let Err(e) = self.shared.epoll.add(listener.as_raw_fd(), LISTENER)
            {
                warn!("cannot resume listener: {e}");
                self.pause_listener();
            }
        }
        let mut next = now + MAX_WAIT;
        for conn in self.conns.values() {
            next = next.min(conn.deadline(&self.limits));
        }
        if let Some(t) = self.listener_paused_until {
            next = next.min(t);
        }
        if let Some((t, _)) = &self.drain {
            next = next.min(*t);
        }
        self.next_timer = next;
    }

    fn arm(&mut self, at: Instant) {
        self.next_timer = self.next_timer.min(at);
    }
}
