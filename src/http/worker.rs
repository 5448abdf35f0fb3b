//! The worker pool: each worker takes one complete request at a time from the bounded job
//! channel, runs the handler (a panic becomes a 500, never a dead worker; a panic anywhere else
//! while serving closes that connection and the worker goes on), counts it out of its lane,
//! waits a moment for the connection's next request and serves that too (`next_request`), and
//! finally hands the connection back to the poller for keep-alive or closing — re-arming a
//! kept-alive socket in the epoll set itself, so the common case wakes nobody.
//!
//! Thread model: one pool per [`super::Lane`] (`Limits::workers`, `quick_workers`,
//! `control_workers` threads, each with `Limits::stack_size` of stack), each thread blocked in
//! `pop` on its lane's job queue until the poller closes it at shutdown. While
//! serving, a worker owns the connection; its socket stays non-blocking and every write waits
//! at most `io_timeout` for room, so a client that stops reading cannot hold the worker longer
//! than that per write. Workers run at the process's priority: what keeps probes and metrics
//! quick when chat traffic saturates the CPU is the poller answering `/health` and `/ready`
//! itself and the short scheduler slices of the poller and the small lanes (`super`).
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, error, warn};

use super::conn::{Advance, Conn, Ready};
use super::queue::JobQueue;
use super::response::{CONTINUE_100, RespState, Responder};
use super::{Done, Handler, Job, Lane, Request, Shared};
use crate::sys::net::{wait_readable, write_now};

/// Longest single wait for a next request, so a drain that begins or a job queued meanwhile
/// is seen soon however long `Limits::next_request_wait` is.
const DRAIN_CHECK: Duration = Duration::from_millis(10);
/// Largest read of a next request on the worker (from its stack; the rest follows in more
/// reads).
const NEXT_READ: usize = 8192;

/// Read what `conn` has (at most its read budget and [`NEXT_READ`]) onto its buffer; `Ok(0)`
/// at EOF. Not inlined: the read buffer lives in this frame, on stack pages the handler has
/// already touched, so a worker that never reads a next request never makes them resident
/// (a larger frame in `run` would be probed, page by page, by every idle worker).
#[inline(never)]
fn read_more(conn: &mut Conn, limits: &super::Limits) -> io::Result<usize> {
    let mut chunk = [0u8; NEXT_READ];
    let budget = conn.read_budget(limits).min(NEXT_READ);
    let n = match chunk.get_mut(..budget) {
        Some(buf) => (&*conn.stream).read(buf)?,
        None => 0,
    };
    conn.buf
        .extend_from_slice(chunk.get(..n).unwrap_or_default());
    Ok(n)
}

/// What a worker does with a connection whose request it has served.
enum Then {
    /// Serve the connection's next request (counted in its lane).
    Serve(Job),
    /// Give the connection back to the poller.
    HandBack(Done),
}

pub(super) struct Worker {
    pub(super) handler: Arc<dyn Handler>,
    pub(super) jobs: Arc<JobQueue>,
    pub(super) done: Sender<Done>,
    pub(super) shared: Arc<Shared>,
}

impl Worker {
    pub(super) fn run(self) {
        // `pop` ends once the poller has stopped and closed the queue (shutdown).
        while let Some(job) = self.jobs.pop() {
            let mut next = Some(job);
            // A job is counted in its lane until served; the next request read on the same
            // connection is counted in before it is served here.
            while let Some(job) = next.take() {
                let (id, lane) = (job.conn.id, job.lane);
                // The handler's panics are caught in `serve`; this catches any other one, so
                // the worker lives on and the poller still learns the request is over.
                let done =
                    catch_unwind(AssertUnwindSafe(|| self.serve(job))).unwrap_or_else(|_| {
                        error!("conn {id}: panic while serving; connection closed");
                        Done::lost(id)
                    });
                self.shared.busy(lane).fetch_sub(1, Ordering::AcqRel);
                let waited = catch_unwind(AssertUnwindSafe(|| self.next_request(done, lane)));
                match waited {
                    Ok(Then::Serve(job)) => next = Some(job),
                    Ok(Then::HandBack(done)) => self.hand_back(done),
                    Err(_) => {
                        error!("conn {id}: panic while reading the next request; closed");
                        self.hand_back(Done::lost(id));
                    }
                }
            }
        }
    }

    /// Wait up to `Limits::next_request_wait` for the next request on a kept-alive connection and
    /// serve it here, which spares the poller's wake-up, its read and the hand-off to a worker
    /// (a client in a conversation sends its next request as soon as it has read the answer).
    /// `Serve`: that request, already counted in `lane`. `HandBack`: the connection goes back
    /// to the poller, with whatever was read of its next request.
    fn next_request(&self, mut done: Done, lane: Lane) -> Then {
        let shared = &self.shared;
        let Some(conn) = done.conn.as_mut().filter(|_| done.keep_alive) else {
            return Then::HandBack(done);
        };
        let limits = &shared.limits;
        conn.reset_for_next(Instant::now());
        let until = Instant::now() + limits.next_request_wait;
        // Bytes already buffered (a pipelined request) are acted on before reading.
        let mut step = conn.advance(limits, Instant::now());
        loop {
            match step {
                Advance::NeedMore => {}
                Advance::SendContinue => {
                    // Admission is checked once the body is in, as for any request.
                    if !write_now(&conn.stream, CONTINUE_100) {
                        done.keep_alive = false;
                        return Then::HandBack(done);
                    }
                }
                Advance::Ready(ready) if self.admit_here(lane, &ready.request) => {
                    let Ready {
                        request,
                        keep_alive,
                        head_only,
                    } = *ready;
                    let Some(conn) = done.conn.take() else {
                        return Then::HandBack(done);
                    };
                    return Then::Serve(Job {
                        lane,
                        conn,
                        request,
                        keep_alive,
                        head_only,
                    });
                }
                other => {
                    done.next = Some(other);
                    return Then::HandBack(done);
                }
            }
            // Nothing complete yet: wait, then read what came.
            match self.wait_for_bytes(conn, until) {
                Ok(true) => {}
                Ok(false) => return Then::HandBack(done),
                Err(e) => {
                    debug!("conn {}: wait for the next request: {e}", conn.id);
                    done.keep_alive = false;
                    return Then::HandBack(done);
                }
            }
            match read_more(conn, limits) {
                Ok(0) => {
                    debug!("conn {}: closed by peer", conn.id);
                    done.keep_alive = false;
                    return Then::HandBack(done);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    debug!("conn {}: read error: {e}", conn.id);
                    done.keep_alive = false;
                    return Then::HandBack(done);
                }
            }
            step = conn.advance(limits, Instant::now());
        }
    }

    /// Wait until `conn` has bytes to read (true), or give up (false): at `until` or the
    /// deadline of the connection's state (a head or body too slow), when a drain begins, or
    /// when no other worker of the lane is idle (so a job queued meanwhile is taken at once; a
    /// second one waits one `DRAIN_CHECK` at most).
    fn wait_for_bytes(&self, conn: &Conn, until: Instant) -> io::Result<bool> {
        loop {
            // A request that takes too long is the poller's to time out.
            let until = until.min(conn.deadline(&self.shared.limits));
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero()
                || self.shared.draining.load(Ordering::Acquire)
                || !self.jobs.has_idle_worker()
            {
                return Ok(false);
            }
            if wait_readable(conn.stream.as_raw_fd(), left.min(DRAIN_CHECK))? {
                return Ok(true);
            }
        }
    }

    /// Whether a request read on this worker's connection is served here, counted in its lane:
    /// it belongs to this worker's lane, which has room for it and no queued job waiting, and
    /// no drain has begun. Otherwise the poller admits or sheds it as any other.
    fn admit_here(&self, lane: Lane, request: &Request) -> bool {
        let shared = &self.shared;
        if shared.draining.load(Ordering::Acquire)
            || self.jobs.has_jobs()
            || self.handler.lane(&request.method, &request.path) != lane
        {
            return false;
        }
        let busy = shared.busy(lane);
        if busy.fetch_add(1, Ordering::AcqRel) < shared.limits.admitted(lane) {
            return true;
        }
        busy.fetch_sub(1, Ordering::AcqRel);
        false
    }

    /// Give the connection back to the poller. The common case, a kept-alive connection with
    /// nothing buffered, costs no wake-up: the connection goes into the done channel, then
    /// this thread re-arms its socket in the epoll set, and the poller files it when it next
    /// wakes (at the latest for that socket's next event, which the channel send precedes).
    /// Anything else (a close, pipelined bytes to parse, a drain) wakes the poller.
    fn hand_back(&self, mut done: Done) {
        let id = done.id;
        let rearm = match &done.conn {
            Some(conn)
                if done.keep_alive
                    && done.next.is_none()
                    && conn.buf.is_empty()
                    && !self.shared.draining.load(Ordering::Acquire) =>
            {
                // Holds the descriptor open until re-armed, even if the poller drops the
                // connection first (a drain): a closed socket leaves the epoll set by itself.
                Some(Arc::clone(&conn.stream))
            }
            _ => None,
        };
        done.armed = rearm.is_some();
        match self.done.try_send(done) {
            Ok(()) => {}
            // Cannot be full: it holds at most one message per admitted request and its
            // capacity is the admission limit. Disconnected: the poller has stopped.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                debug!("conn {id}: poller gone, closing");
                return;
            }
        }
        match rearm {
            Some(stream) => {
                if let Err(e) = self.shared.epoll.rearm(stream.as_raw_fd(), id) {
                    // The poller cannot hear this client any more: end the connection (the
                    // poller's idle sweep drops its entry).
                    debug!("conn {id}: cannot re-arm: {e}");
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
            None => self.shared.waker.wake(),
        }
    }

    fn serve(&self, job: Job) -> Done {
        let Job {
            conn,
            request,
            keep_alive,
            head_only,
            ..
        } = job;
        let keep_alive = answer(
            &*self.handler,
            &conn.stream,
            request,
            (keep_alive, head_only),
            &self.shared,
            false,
        );
        Done {
            id: conn.id,
            conn: Some(conn),
            keep_alive,
            armed: false,
            next: None,
        }
    }
}

/// Run the handler on one request and make sure it is answered: a handler that panics or
/// returns without answering gets a 500. `(keep_alive, head_only)` as parsed; `on_poller`: the
/// poller answers it itself, and its writes never wait for room. True when the connection can
/// carry a next request.
pub(super) fn answer(
    handler: &dyn Handler,
    stream: &TcpStream,
    request: Request,
    (keep_alive, head_only): (bool, bool),
    shared: &Shared,
    on_poller: bool,
) -> bool {
    let (method, path) = (request.method.clone(), request.path.clone());
    let mut resp = Responder::new(stream, request.version, head_only, keep_alive, shared);
    if on_poller {
        resp = resp.never_waiting();
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| handler.handle(request, &mut resp)));
    match outcome {
        Err(_) => {
            warn!("handler panicked on {method} {path}; answering 500 and closing");
            resp.fail_after_panic();
        }
        Ok(()) if resp.state() == RespState::Pending => {
            warn!("handler sent no response to {method} {path}; answering 500");
            resp.fail_unanswered();
        }
        Ok(()) => {}
    }
    let keep_alive = resp.reusable() && !shared.draining.load(Ordering::Acquire);
    debug!("{method} {path} answered, keep-alive {keep_alive}");
    keep_alive
}
