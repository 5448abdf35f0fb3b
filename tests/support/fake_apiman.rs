//! An in-process fake Apiman gateway for the auth tests.
//!
//! `FakeApiman::start(probe_path, key_header)` listens on `127.0.0.1:0`; each connection gets
//! its own thread (HTTP/1.1 keep-alive, GET only). A request for exactly `probe_path` carrying
//! the key header is a probe: it is counted per key and answered per key ([`Answer`], default
//! 401 like a real gateway with an unknown key). A request for another path is counted as
//! misdirected and gets 404; a probe without the header gets 401 and is counted as keyless.
//! Slow answers sleep in small steps so dropping the fake stops every thread promptly.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const POLL: Duration = Duration::from_millis(20);
const MAX_HEAD: usize = 64 * 1024;

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
    stop: AtomicBool,
    probe_path: String,
    key_header: String,
    answers: Mutex<HashMap<String, Answer>>,
    probes: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    misdirected: AtomicUsize,
    keyless: AtomicUsize,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

pub struct FakeApiman {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeApiman {
    /// `probe_path` is the full path a probe must use, e.g.
    /// `/apiman-gateway/aiproxy/authcheck/1.0/health`.
    pub fn start(probe_path: &str, key_header: &str) -> FakeApiman {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            probe_path: probe_path.into(),
            key_header: key_header.into(),
            answers: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            misdirected: AtomicUsize::new(0),
            keyless: AtomicUsize::new(0),
            handlers: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || accept_loop(&listener, &s));
        FakeApiman {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` + `prefix` (the gateway URL an aiproxy config names).
    pub fn url(&self, prefix: &str) -> String {
        format!("http://{}{prefix}", self.addr)
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

impl Drop for FakeApiman {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let handlers: Vec<_> = self.shared.handlers.lock().drain(..).collect();
        for h in handlers {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(shared);
                let h = std::thread::spawn(move || serve(stream, &s));
                shared.handlers.lock().push(h);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Serve requests on one connection until the peer closes or the fake stops.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(head_len) = read_head(&mut stream, &mut buf, shared) else {
            return;
        };
        let head = buf[..head_len].to_vec();
        buf.drain(..head_len);
        let Some((target, headers)) = parse_head(&head) else {
            let _ = respond(&mut stream, 400);
            return;
        };
        shared.seen.lock().push(Seen {
            target: target.clone(),
            headers: headers.clone(),
            at: Instant::now(),
        });
        let status = route(shared, &target, &headers);
        if respond(&mut stream, status).is_err() {
            return;
        }
    }
}

/// Read until a complete head is buffered; `None` on close, error or stop.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        if buf.len() > MAX_HEAD || shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

fn parse_head(head: &[u8]) -> Option<(String, Vec<(String, String)>)> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let target = req.path?.to_string();
    let headers = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Some((target, headers))
}

/// The status for one request; counts probes and sleeps for slow answers.
fn route(shared: &Shared, target: &str, headers: &[(String, String)]) -> u16 {
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
            let until = Instant::now() + d;
            while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
            s
        }
    }
}

fn respond(stream: &mut TcpStream, status: u16) -> std::io::Result<()> {
    let body = format!("{{\"status\":{status}}}");
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
