//! The worker pool: each worker takes one complete request at a time from the bounded job
//! channel, runs the handler (a panic becomes a 500, never a dead worker; a panic anywhere else
//! while serving closes that connection and the worker goes on), and hands the connection back
//! to the poller for keep-alive or closing.
//!
//! Thread model: one pool per [`super::Lane`] (`Limits::workers`, `quick_workers`,
//! `control_workers` threads, each with `Limits::stack_size` of stack), each thread blocked in
//! `recv` on its lane's job channel until the poller drops the sender at shutdown. While serving, a worker owns the connection; its socket
//! is switched to blocking mode with a write timeout, so a client that stops reading cannot hold
//! the worker longer than `io_timeout` per write. Main-lane workers run at a lower priority
//! (nice +[`MAIN_LANE_NICE`]) than the poller and the other lanes, so liveness probes and
//! metrics answer quickly even when chat traffic saturates the CPU.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{debug, error, warn};

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
    pub(super) jobs: Receiver<Job>,
    pub(super) done: Sender<Done>,
    pub(super) shared: Arc<Shared>,
}

impl Worker {
    pub(super) fn run(self) {
        let mut lowered = false;
        // `recv` ends with an error once the poller drops the job sender (shutdown).
        while let Ok(job) = self.jobs.recv() {
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
                    lane,
                    conn: None,
                    keep_alive: false,
                }
            });
            match self.done.try_send(done) {
                Ok(()) => self.shared.waker.wake(),
                // Cannot be full: it holds at most one message per admitted request and its
                // capacity is the admission limit. Disconnected: the poller has stopped.
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    debug!("conn {id}: poller gone, closing");
                }
            }
        }
    }

    fn serve(&self, job: Job) -> Done {
        let Job {
            lane,
            conn,
            request,
            keep_alive,
            head_only,
        } = job;
        // Blocking writes bounded by the write timeout the poller set at accept (`io_timeout`).
        if let Err(e) = conn.stream.set_nonblocking(false) {
            debug!("conn {}: cannot prepare socket: {e}", conn.id);
            return Done {
                id: conn.id,
                lane,
                conn: Some(conn),
                keep_alive: false,
            };
        }
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
            lane,
            conn: Some(conn),
            keep_alive,
        }
    }
}
