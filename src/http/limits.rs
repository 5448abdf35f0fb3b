//! The server's limits ([`Limits`]): thread counts, admission caps, sizes and timeouts, with
//! their defaults and validation.
//!
//! Thread model: plain data, cloned into the poller at start.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::io;
use std::time::Duration;

use super::Lane;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Main-lane worker threads (each serves one request, a whole stream, at a time).
    pub workers: usize,
    /// Main-lane requests admitted at once (running + queued).
    pub max_in_flight: usize,
    /// Quick-lane and control-lane worker threads.
    pub quick_workers: usize,
    pub control_workers: usize,
    /// Requests admitted at once in the quick lane, and in the control lane.
    pub lane_queue: usize,
    /// Stack size of every worker thread. Only the pages a worker touches become resident.
    pub stack_size: usize,
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Whole head must arrive within this after the first byte.
    pub head_timeout: Duration,
    /// Per write on a socket while a response is written; also the time the whole request
    /// body has to arrive after the head.
    pub io_timeout: Duration,
    pub idle_timeout: Duration,
    /// Open connections from one client address (an IPv6 client counts per /64), so one
    /// client cannot take all `max_connections`; 0 = no per-address cap.
    pub max_connections_per_ip: usize,
    /// A new connection that has not sent its first byte within this is closed.
    pub first_byte_timeout: Duration,
    /// How long a worker that answered a kept-alive request waits on that connection for the
    /// next one and serves it itself, instead of handing the connection back to the poller
    /// (a client in a conversation sends its next request as soon as it has read the answer;
    /// this spares the poller's wake-up and the hand-off). Zero: never wait.
    pub next_request_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 1024,
            max_in_flight: 2048,
            quick_workers: 2,
            control_workers: 2,
            lane_queue: 64,
            stack_size: DEFAULT_STACK_SIZE,
            max_connections: 4096,
            max_body_bytes: 4 * 1024 * 1024,
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            head_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: 2048,
            first_byte_timeout: Duration::from_secs(10),
            next_request_wait: Duration::from_millis(1),
        }
    }
}

/// Worker stack size (also used by the per-request helper threads of the tool loop). The whole
/// test suite passes in debug builds with 256 KiB (128 KiB overflows); release builds need less. Only touched pages are resident, so the size bounds
/// address space, not memory.
pub const DEFAULT_STACK_SIZE: usize = 512 * 1024;
/// Smallest accepted `Limits::stack_size`.
pub const MIN_STACK_SIZE: usize = 64 * 1024;

impl Limits {
    /// Worker threads of a lane.
    pub(super) fn workers_of(&self, lane: Lane) -> usize {
        match lane {
            Lane::Main => self.workers,
            Lane::Quick => self.quick_workers,
            Lane::Control => self.control_workers,
        }
    }

    /// Requests a lane admits at once (running + queued).
    pub(super) fn admitted(&self, lane: Lane) -> usize {
        match lane {
            Lane::Main => self.max_in_flight,
            Lane::Quick | Lane::Control => self.lane_queue,
        }
    }

    /// Worker threads of all lanes.
    pub fn threads(&self) -> usize {
        self.workers + self.quick_workers + self.control_workers
    }

    pub(super) fn validate(&self) -> io::Result<()> {
        let bad = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("http limits: {what}"),
            ))
        };
        if self.workers == 0 || self.max_in_flight == 0 || self.max_connections == 0 {
            return bad("workers, max_in_flight and max_connections must be at least 1");
        }
        if self.quick_workers == 0 || self.control_workers == 0 || self.lane_queue == 0 {
            return bad("quick_workers, control_workers and lane_queue must be at least 1");
        }
        if self.stack_size < MIN_STACK_SIZE {
            return bad("stack_size must be at least 64 KiB");
        }
        if self.max_head_bytes < 64 || self.max_headers == 0 {
            return bad("max_head_bytes must be at least 64 and max_headers at least 1");
        }
        if self.head_timeout.is_zero()
            || self.io_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.first_byte_timeout.is_zero()
        {
            return bad("timeouts must be non-zero");
        }
        Ok(())
    }
}
