//! An in-process OpenAI-compatible upstream for tests.
//!
//! `FakeOpenAi::start()` listens on `127.0.0.1:0`; every accepted connection gets its own
//! thread (HTTP/1.1 keep-alive, `Content-Length` request bodies). `POST …/chat/completions`
//! is answered from a script: queued [`Reply`]s in order, then the default reply; `GET
//! …/models` lists `fake-model`; anything else is 404. Every request is recorded (method,
//! path, headers, JSON body) and open connections are counted, so a test can check that a
//! client closed its upstream connection. Waits poll the socket, so a client that leaves is
//! noticed within ~20 ms even during a delay or a hang. Dropping the fake stops every thread.

mod conn;
mod reply;

pub use reply::{Reply, Trickle};

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

const POLL: Duration = Duration::from_millis(20);

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// In the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` if it was not JSON).
    pub body: Value,
    pub raw_body: Vec<u8>,
    /// Which accepted connection (0, 1, …) carried it.
    pub connection: usize,
    pub at: Instant,
}

impl Recorded {
    /// First header with this name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn stream(&self) -> bool {
        self.body["stream"] == json!(true)
    }

    /// `function.name` of every offered tool.
    pub fn tool_names(&self) -> Vec<String> {
        self.body["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["function"]["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

struct Shared {
    stop: AtomicBool,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
    open: AtomicUsize,
    accepted: AtomicUsize,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeOpenAi {
    /// Start on an ephemeral loopback port. The default reply is `Reply::text("Hello from the
    /// fake upstream.")`.
    pub fn start() -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::text("Hello from the fake upstream.")),
            requests: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            handlers: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("fake-openai-accept".into())
            .spawn(move || accept_loop(&listener, &s))
            .expect("spawn accept thread");
        FakeOpenAi {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Base URL for a backend config: `http://127.0.0.1:<port>/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue a reply for the next completion request.
    pub fn push(&self, reply: Reply) -> &Self {
        self.shared.script.lock().push_back(reply);
        self
    }

    /// The reply used once the queue is empty.
    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock() = reply;
    }

    /// Queued replies not yet used.
    pub fn pending(&self) -> usize {
        self.shared.script.lock().len()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().clone()
    }

    /// Completion requests only (`POST …/chat/completions`), in order.
    pub fn completions(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .collect()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.requests.lock().last().cloned()
    }

    /// Wait until at least `n` requests arrived; panics after `timeout`.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < end,
                "fake upstream: {} of {n} requests after {timeout:?}",
                r.len()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Connections open right now (idle keep-alive ones included).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn total_connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Wait until exactly `n` connections are open; false on timeout.
    pub fn wait_open_connections(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.open_connections() != n {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(POLL);
        }
        true
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let handlers = std::mem::take(&mut *self.shared.handlers.lock());
        for h in handlers {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let id = shared.accepted.fetch_add(1, Ordering::SeqCst);
                shared.open.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(shared);
                let h = std::thread::Builder::new()
                    .name(format!("fake-openai-{id}"))
                    .spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_nodelay(true);
                        // A client that stops reading must not pin this thread (or Drop).
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                        conn::serve_connection(stream, id, &s);
                        s.open.fetch_sub(1, Ordering::SeqCst);
                    })
                    .expect("spawn connection thread");
                shared.handlers.lock().push(h);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}
