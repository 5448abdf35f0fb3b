//! An in-process OpenAI-compatible upstream for tests.
//!
//! `FakeOpenAi::start()` listens on `127.0.0.1:0` (the shared [`super::fake_http`] base: a
//! thread per connection, HTTP/1.1 keep-alive, `Content-Length` request bodies). `POST …/chat/completions`
//! is answered from a script: queued [`Reply`]s in order, then the default reply; `GET
//! …/models` lists `fake-model`; anything else is 404. Every request is recorded (method,
//! path, headers, JSON body) and open connections are counted, so a test can check that a
//! client closed its upstream connection. Waits poll the socket, so a client that leaves is
//! noticed within ~20 ms even during a delay or a hang. Dropping the fake stops every thread.

mod conn;
mod reply;

pub use reply::{Reply, Trickle};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::fake_http::{FakeHttp, POLL};

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
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct FakeOpenAi {
    http: FakeHttp,
    shared: Arc<Shared>,
}

impl FakeOpenAi {
    /// Start on an ephemeral loopback port. The default reply is `Reply::text("Hello from the
    /// fake upstream.")`.
    pub fn start() -> FakeOpenAi {
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::text("Hello from the fake upstream.")),
            requests: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let http = FakeHttp::start("fake-openai", move |c| conn::serve_connection(c, &s));
        FakeOpenAi { http, shared }
    }

    /// Base URL for a backend config: `http://127.0.0.1:<port>/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.http.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
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
        self.http.open_connections()
    }

    /// Connections accepted so far.
    pub fn total_connections(&self) -> usize {
        self.http.total_connections()
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
