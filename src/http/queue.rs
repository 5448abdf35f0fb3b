//! The job queue of one lane: the poller pushes admitted requests, that lane's workers take
//! them. A mutex-guarded `VecDeque` and a condition variable rather than a channel: crossbeam's
//! `recv` spins and calls `sched_yield` up to four times before it sleeps, which every worker
//! going idle paid once per request (four syscalls, and a trip through the scheduler that other
//! threads on a busy box wait behind). Here an idle worker sleeps on a futex at once.
//!
//! Bounded: the poller admits at most `Limits::admitted(lane)` requests to a lane (running +
//! queued), and `push` refuses past that capacity anyway.
//!
//! Thread model: one poller pushes; the lane's workers wait in `pop`. The lock is held only to
//! move a job in or out, never while serving.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::Job;

pub(super) struct JobQueue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

struct State {
    jobs: VecDeque<Job>,
    /// Workers blocked in `pop`, waiting for a job.
    idle: usize,
    /// Set when the poller stops: workers take what is left, then exit.
    closed: bool,
}

impl JobQueue {
    pub(super) fn new(capacity: usize) -> JobQueue {
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    /// Nothing runs user code under the lock, so a poisoned lock still holds a sound queue.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue a job for a worker; gives it back when the queue is full or closed.
    pub(super) fn push(&self, job: Job) -> Result<(), Box<Job>> {
        let mut state = self.lock();
        if state.closed || state.jobs.len() >= self.capacity {
            return Err(Box::new(job));
        }
        state.jobs.push_back(job);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub(super) fn pop(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
        }
    }

    /// True while jobs wait for a worker of this lane.
    pub(super) fn has_jobs(&self) -> bool {
        !self.lock().jobs.is_empty()
    }

    /// True when a job pushed now would be taken at once: nothing is queued and a worker is
    /// waiting in `pop`. A worker may then spend a moment on other things (waiting for its
    /// connection's next request) without delaying anyone.
    pub(super) fn has_idle_worker(&self) -> bool {
        let state = self.lock();
        state.jobs.is_empty() && state.idle > 0
    }

    /// Remove every job no worker has started (end of a drain).
    pub(super) fn take_all(&self) -> Vec<Job> {
        self.lock().jobs.drain(..).collect()
    }

    /// No more jobs: idle workers wake up and exit.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}
