//! The worker pool: each worker takes one complete request at a time from the bounded job
//! channel, runs the handler (a panic becomes a 500, never a dead worker; a panic anywhere else
//! while serving closes that connection and the worker goes on), counts it out of its lane, and
//! hands the connection back to the poller for keep-alive or closing — re-arming a kept-alive
//! socket in the epoll set itself, so the common case wakes nobody.
//!
//! Thread model: one pool per [`super::Lane`] (`Limits::workers`, `quick_workers`,
//! `control_workers` threads, each with `Limits::stack_size` of stack), each thread blocked in
//! `pop` on its lane's job queue until the poller closes it at shutdown. While
//! serving, a worker owns the connection; its socket stays non-blocking and every write waits
//! at most `io_timeout` for room, so a client that stops reading cannot hold the worker longer
//! than that per write. Main-lane workers run at a lower priority (nice +[`MAIN_LANE_NICE`])
//! than the poller and the other lanes, so liveness probes and metrics answer quickly even when
//! chat traffic saturates the CPU.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Sender, TrySendError};
use log::{debug, error, warn};

use super::queue::JobQueue;
use super::response::{RespState, Responder};
use super::{Done, Handler, Job, Lane, Shared};

/// How much lower than the poller and the quick and control lanes main-lane workers run
/// (nice value added): with a thousand streams on two cores, the poller and a `/health` probe
/// would otherwise wait behind every runnable chat worker.
const MAIN_LANE_NICE: i32 = 5;

/// Once per main-lane worker, on its first request (the pool does not tell a worker its lane).
fn lower_priority() {
    if let Err(e) = crate::sys::process::lower_thread_priority(MAIN_LANE_NICE) {
        debug!("cannot lower a worker's priority: {e}");
    }
}

pub(super) struct Worker {
    pub(super) handler: Arc<dyn Handler>,
    pub(super) jobs: Arc<JobQueue>,
    pub(super) done: Sender<Done>,
    pub(super) shared: Arc<Shared>,
}

impl Worker {
    pub(super) fn run(self) {
        let mut lowered = false;
        // `pop` ends once the poller has stopped and closed the queue (shutdown).
        while let Some(job) = self.jobs.pop() {
            let (id, lane) = (job.conn.id, job.lane);
            if lane == Lane::Main && !lowered {
                lowered = true;
                lower_priority();
            }
            // The handler's panics are caught in `serve`; this catches any other one, so the
            // worker lives on and the poller still learns the request is over.
            let done = catch_unwind(AssertUnwindSafe(|| self.serve(job))).unwrap_or_else(|_| {
                error!("conn {id}: panic while serving; connection closed");
                Done {
                    id,
                    conn: None,
                    keep_alive: false,
                    armed: false,
                }
            });
            self.shared.busy(lane).fetch_sub(1, Ordering::AcqRel);
            self.hand_back(done);
        }
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
        // The socket stays non-blocking; the responder waits up to `io_timeout` per write.
        let (method, path) = (request.method.clone(), request.path.clone());
        let version = request.version;
        let mut resp = Responder::new(&conn.stream, version, head_only, keep_alive, &self.shared);
        let outcome = catch_unwind(AssertUnwindSafe(|| self.handler.handle(request, &mut resp)));
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
        let keep_alive = resp.reusable() && !self.shared.draining.load(Ordering::Acquire);
        debug!(
            "conn {}: {method} {path} served, keep-alive {keep_alive}",
            conn.id
        );
        Done {
            id: conn.id,
            conn: Some(conn),
            keep_alive,
            armed: false,
        }
    }
}
