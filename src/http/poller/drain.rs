//! The poller's side of a shutdown: take the request, close the listener and idle
//! connections, then wait (up to the drain time) for in-flight requests, and force the rest shut.
//!
//! Thread model: runs on the poller thread, as part of its loop.
#![deny(clippy::string_slice, clippy::indexing_slicing)]

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, warn};

use super::{Control, Poller};

impl Poller {
    /// Handle a shutdown request; false when the `Server` is gone and the loop should end.
    pub(super) fn poll_control(&mut self) -> bool {
        match self.control.try_recv() {
            Ok(Control::Shutdown { drain, reply }) => {
                self.begin_drain(drain, reply);
                true
            }
            Err(crossbeam_channel::TryRecvError::Empty) => true,
            Err(crossbeam_channel::TryRecvError::Disconnected) => self.drain.is_some(),
        }
    }

    fn begin_drain(&mut self, drain: Duration, reply: Sender<bool>) {
        if self.drain.is_some() {
            return;
        }
        debug!(
            "shutdown: closing listener and {} idle connections",
            self.conns.len()
        );
        self.shared.draining.store(true, Ordering::Release);
        if let Some(listener) = self.listener.take() {
            let _ = self.shared.epoll.delete(listener.as_raw_fd());
        }
        self.listener_paused_until = None;
        // Dropping a Conn closes its socket (the poller holds the only reference).
        self.conns.clear();
        let deadline = Instant::now() + drain;
        self.arm(deadline);
        self.drain = Some((deadline, reply));
    }

    /// True when the drain is over: everything finished, or the deadline forced the rest shut.
    pub(super) fn drain_finished(&mut self) -> bool {
        let Some((deadline, reply)) = &self.drain else {
            return false;
        };
        if self.in_flight.is_empty() {
            debug!("shutdown: all requests finished");
            let _ = reply.try_send(true);
            return true;
        }
        if Instant::now() < *deadline {
            return false;
        }
        warn!(
            "shutdown: {} requests still running at the deadline; closing them",
            self.in_flight.len()
        );
        // Requests no worker has started would otherwise run after the deadline for nobody.
        for queued in &self.lanes {
            for job in queued.take_all() {
                self.in_flight.remove(&job.conn.id);
                self.shared.busy(job.lane).fetch_sub(1, Ordering::AcqRel);
            }
        }
        for stream in self.in_flight.values() {
            // Their next write fails, so handlers notice and return.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let _ = reply.try_send(false);
        true
    }
}
