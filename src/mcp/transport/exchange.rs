//! Cancellable HTTP exchanges: a ureq connector that keeps a handle on every connection's
//! socket, so that the thread cancelling a call can shut the call's connection down at once —
//! the server sees the request's stream close (the 2026-07-28 revision's cancellation), and
//! the worker thread blocked reading the reply wakes up instead of waiting for its timeout.
//!
//! A worker thread [`enter`]s an [`Exchange`] before it sends a request; every connection that
//! does I/O for that thread while it is entered (new or reused from the pool) is attached to
//! it. [`Exchange::cancel`] shuts down the connections still owned by the exchange: a pooled
//! connection that has since been taken by another exchange belongs to that one and is left
//! alone (ownership is checked under the connection's lock).

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, ShutdownHandle, Transport,
};

thread_local! {
    static CURRENT: RefCell<Option<Arc<Exchange>>> = const { RefCell::new(None) };
}

/// One request's HTTP exchange (its POST and its reply stream).
#[derive(Default)]
pub struct Exchange {
    conns: Mutex<Vec<Arc<Conn>>>,
    cancelled: std::sync::atomic::AtomicBool,
}

/// A connection: the socket's shutdown handle and the exchange now using it.
#[derive(Default)]
struct Conn {
    handle: Mutex<Option<Weak<dyn ShutdownHandle>>>,
    owner: Mutex<Weak<Exchange>>,
}

impl Exchange {
    /// Shut down every connection this exchange still owns; later attachments are shut down
    /// as they come.
    pub fn cancel(self: &Arc<Self>) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Release);
        let conns = self.conns.lock().clone();
        for c in conns {
            c.shutdown_if_owned_by(self);
        }
    }

    fn attach(self: &Arc<Self>, conn: &Arc<Conn>) {
        {
            let mut owner = conn.owner.lock();
            if owner.upgrade().is_some_and(|o| Arc::ptr_eq(&o, self)) {
                return;
            }
            *owner = Arc::downgrade(self);
        }
        let mut conns = self.conns.lock();
        conns.retain(|c| {
            c.owner
                .lock()
                .upgrade()
                .is_some_and(|o| Arc::ptr_eq(&o, self))
        });
        conns.push(Arc::clone(conn));
        drop(conns);
        if self.cancelled.load(std::sync::atomic::Ordering::Acquire) {
            conn.shutdown_if_owned_by(self);
        }
    }
}

impl Conn {
    fn shutdown_if_owned_by(&self, ex: &Arc<Exchange>) {
        let owner = self.owner.lock();
        if owner.upgrade().is_some_and(|o| Arc::ptr_eq(&o, ex))
            && let Some(h) = self.handle.lock().as_ref().and_then(Weak::upgrade)
        {
            h.shutdown();
        }
    }
}

/// Leaves the exchange when dropped.
pub struct Entered(Option<Arc<Exchange>>);

/// Attach this thread's connections to `ex` until the guard is dropped.
pub fn enter(ex: &Arc<Exchange>) -> Entered {
    Entered(CURRENT.with(|c| c.replace(Some(Arc::clone(ex)))))
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// ureq's default connector chain, with every connection tracked for [`Exchange::cancel`].
#[derive(Debug, Default)]
pub struct Cancellable(DefaultConnector);

impl Connector<()> for Cancellable {
    type Out = Tracked;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Tracked>, ureq::Error> {
        let conn = Arc::new(Conn::default());
        let register = Arc::clone(&details.register_shutdown);
        let keep = Arc::clone(&conn);
        let tracked = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: Arc::clone(&details.current_time),
            run_connector: Arc::clone(&details.run_connector),
            register_shutdown: Arc::new(move |h: Weak<dyn ShutdownHandle>| {
                *keep.handle.lock() = Some(h.clone());
                register(h)
            }),
        };
        let inner = self.0.connect(&tracked, chained)?;
        Ok(inner.map(|inner| Tracked { inner, conn }))
    }
}

/// A transport that attaches itself to the current thread's [`Exchange`] on every I/O.
pub struct Tracked {
    inner: Box<dyn Transport>,
    conn: Arc<Conn>,
}

impl Tracked {
    fn attach(&self) {
        CURRENT.with(|c| {
            if let Some(ex) = c.borrow().as_ref() {
                ex.attach(&self.conn);
            }
        });
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Transport for Tracked {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }
    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.attach();
        self.inner.transmit_output(amount, timeout)
    }
    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.attach();
        self.inner.maybe_await_input(timeout)
    }
    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.attach();
        self.inner.await_input(timeout)
    }
    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }
    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
