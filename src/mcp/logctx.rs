//! The request a thread works for, so MCP log lines can name it (`<request id> mcp[x]: …`).
//!
//! The gateway enters a request's id on its worker thread; the tool set carries it into the
//! scoped threads it spawns for listings and calls. Lines logged by a session's own reader
//! threads belong to no request and have no prefix. Thread-local: nothing is shared or locked.

use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static CURRENT: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Restores the thread's previous request id when dropped.
pub struct Guard(Option<Arc<str>>);

/// Log this thread's MCP lines under `id` until the guard is dropped.
pub fn enter(id: &str) -> Guard {
    enter_shared(Some(Arc::from(id)))
}

/// [`enter`] with an id taken from another thread's [`current`] (or none).
pub fn enter_shared(id: Option<Arc<str>>) -> Guard {
    Guard(CURRENT.with(|c| c.replace(id)))
}

/// The request id this thread works for.
pub fn current() -> Option<Arc<str>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// `"<request id> "`, or `""` outside a request: the prefix of an MCP log line.
pub fn prefix() -> String {
    current().map(|id| format!("{id} ")).unwrap_or_default()
}

impl Drop for Guard {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_and_restores() {
        assert_eq!(prefix(), "");
        {
            let _a = enter("req-1");
            assert_eq!(prefix(), "req-1 ");
            {
                let _b = enter_shared(None);
                assert_eq!(prefix(), "");
            }
            assert_eq!(prefix(), "req-1 ");
            let id = current();
            std::thread::spawn(move || {
                assert_eq!(prefix(), "");
                let _g = enter_shared(id);
                assert_eq!(prefix(), "req-1 ");
            })
            .join()
            .unwrap();
        }
        assert_eq!(prefix(), "");
    }
}
