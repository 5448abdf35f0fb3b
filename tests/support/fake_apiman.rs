//! An in-process fake Apiman gateway for the auth tests.
//!
//! `FakeApiman::start(probe_path, key_header)` listens on `127.0.0.1:0` (the shared
//! [`super::fake_http`] base: a thread per connection, HTTP/1.1 keep-alive). A request for exactly `probe_path` carrying
//! the key header is a probe: it is counted per key and answered per key ([`Answer`], default
//! 401 like a real gateway with an unknown key). A request for another path is counted as
//! misdirected and gets 404; a probe without the header gets 401 and is counted as keyless.
//! Slow answers sleep in small steps so dropping the fake stops every thread promptly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::fake_http::{Conn, FakeHttp};

/// How the fake answers a probe for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Wait, then answer with the status.
    Slow(Duration, u16),
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request target as sent (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

struct Shared {
    probe_path: String,
    key_header: String,
    answers: Mutex<HashMap<String, Answer>>,
    probes: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    misdirected: AtomicUsize,
    keyless: AtomicUsize,
}

pub struct FakeApiman {
    http: FakeHttp,
    shared: Arc<Shared>,
}

impl FakeApiman {
    /// `probe_path` is the full path a probe must use, e.g.
    /// `/apiman-gateway/aiproxy/authcheck/1.0/health`.
    pub fn start(probe_path: &str, key_header: &str) -> FakeApiman {
        let shared = Arc::new(Shared {
            probe_path: probe_path.into(),
            key_header: key_header.into(),
            answers: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            misdirected: AtomicUsize::new(0),
            keyless: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let http = FakeHttp::start("fake-apiman", move |c| serve(c, &s));
        FakeApiman { http, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// `http://127.0.0.1:<port>` + `prefix` (the gateway URL an aiproxy config names).
    pub fn url(&self, prefix: &str) -> String {
        format!("http://{}{prefix}", self.http.addr())
    }

    pub fn answer(&self, key: &str, answer: Answer) {
        self.shared.answers.lock().insert(key.into(), answer);
    }

    /// Probes received for `key` so far (counted on arrival, before answering).
    pub fn probes(&self, key: &str) -> usize {
        self.shared.probes.lock().get(key).copied().unwrap_or(0)
    }

    /// Probes for every key.
    pub fn total_probes(&self) -> usize {
        self.shared.probes.lock().values().sum()
    }

    pub fn misdirected(&self) -> usize {
        self.shared.misdirected.load(Ordering::SeqCst)
    }

    pub fn keyless(&self) -> usize {
        self.shared.keyless.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().clone()
    }
}

/// Serve requests on one connection until the peer closes or the fake stops.
fn serve(mut conn: Conn, shared: &Shared) {
    while let Some(req) = conn.next_request() {
        shared.seen.lock().push(Seen {
            target: req.target.clone(),
            headers: req.headers.clone(),
            at: Instant::now(),
        });
        let status = route(&conn, shared, &req.target, &req.headers);
        let body = format!("{{\"status\":{status}}}");
        if !conn.send(status, &[], body.as_bytes()) {
            return;
        }
    }
}

/// The status for one request; counts probes and sleeps for slow answers.
fn route(conn: &Conn, shared: &Shared, target: &str, headers: &[(String, String)]) -> u16 {
    if target != shared.probe_path {
        shared.misdirected.fetch_add(1, Ordering::SeqCst);
        return 404;
    }
    let key = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&shared.key_header))
        .map(|(_, v)| v.clone());
    let Some(key) = key else {
        shared.keyless.fetch_add(1, Ordering::SeqCst);
        return 401;
    };
    *shared.probes.lock().entry(key.clone()).or_insert(0) += 1;
    let answer = shared
        .answers
        .lock()
        .get(&key)
        .copied()
        .unwrap_or(Answer::Status(401));
    match answer {
        Answer::Status(s) => s,
        Answer::Slow(d, s) => {
            conn.pause(d);
            s
        }
    }
}
