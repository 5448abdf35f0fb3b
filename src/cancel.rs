//! `Cancel`: a shared flag that says "the client is gone, stop working for it". The HTTP worker
//! sets it when a write fails or the peer closed; the agent loop, backends and MCP calls check it
//! between blocking steps (each of which has its own short timeout), so abandoned work stops soon.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Default, Debug)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
