//! The small HTTP/1.1 base the in-process fakes share (fake OpenAI, Anthropic and Apiman).
//!
//! [`FakeHttp::start`] listens on `127.0.0.1:0`; one thread accepts, each connection gets a
//! thread of its own running the fake's closure with a [`Conn`]. At most [`MAX_CONNECTIONS`]
//! are open at once (more wait in the backlog) and finished threads are reaped as new ones
//! start. [`Conn::next_request`] reads one request (head up to 64 KiB, `Content-Length` body
//! up to 64 MiB; keep-alive, so call it again for the next one), polling the stop flag so that
//! dropping the fake ends every thread promptly; a head that does not parse gets a 400. The
//! fakes keep only their API behaviour: what to answer, written to [`Conn::stream`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often blocked reads and waits look at the stop flag.
pub const POLL: Duration = Duration::from_millis(20);
pub const MAX_CONNECTIONS: usize = 1024;
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request as read from the wire.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// In the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header with this name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Base {
    stop: AtomicBool,
    open: AtomicUsize,
    accepted: AtomicUsize,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

/// One accepted connection, handed to the fake's closure.
pub struct Conn {
    pub stream: TcpStream,
    /// Which accepted connection this is (0, 1, …).
    pub id: usize,
    buf: Vec<u8>,
    base: Arc<Base>,
}

impl Conn {
    /// The fake is being dropped: stop answering.
    pub fn stopping(&self) -> bool {
        self.base.stop.load(Ordering::SeqCst)
    }

    /// The next request on this connection; `None` on EOF, error, an oversized or unparsable
    /// request (answered 400) or when the fake stops.
    pub fn next_request(&mut self) -> Option<Request> {
        let _ = self.stream.set_read_timeout(Some(POLL));
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD || !self.fill()? {
                return None;
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = parsed.parse(&self.buf[..head_end]) else {
            self.send(400, &[], b"{\"error\":\"bad request head\"}");
            return None;
        };
        let method = parsed.method?.to_string();
        let target = parsed.path?.to_string();
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        if len > MAX_BODY {
            self.send(413, &[], b"{\"error\":\"body too large for the fake\"}");
            return None;
        }
        while self.buf.len() < head_end + len {
            if !self.fill()? {
                return None;
            }
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Some(Request {
            method,
            target,
            headers,
            body,
        })
    }

    /// Read more bytes. `Some(false)` on EOF, `None` when stopping or on error.
    fn fill(&mut self) -> Option<bool> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.stopping() {
                return None;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Some(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Wait `d`, watching the socket: true if the client left (or the fake is stopping).
    pub fn wait_or_gone(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        let mut probe = [0u8; 1];
        loop {
            if self.stopping() {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = self.stream.set_read_timeout(Some(left.min(POLL)));
            match self.stream.peek(&mut probe) {
                Ok(0) => return true,
                // The client sent more (a pipelined request): not gone; don't spin on it.
                Ok(_) => std::thread::sleep(left.min(POLL)),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return true,
            }
        }
    }

    /// Sleep `d` in small steps; false if the fake started stopping meanwhile.
    pub fn pause(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(end.saturating_duration_since(Instant::now()).min(POLL));
        }
        !self.stopping()
    }

    /// A whole JSON response with `Content-Length`; false if the write failed.
    pub fn send(&mut self, status: u16, extra: &[(&str, &str)], body: &[u8]) -> bool {
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.stream
            .write_all(head.as_bytes())
            .and_then(|_| self.stream.write_all(body))
            .and_then(|_| self.stream.flush())
            .is_ok()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// A listening fake: its accept thread and connection threads stop when it is dropped.
pub struct FakeHttp {
    addr: SocketAddr,
    base: Arc<Base>,
    accept: Option<JoinHandle<()>>,
}

impl FakeHttp {
    /// Listen on an ephemeral loopback port; `serve` runs once per connection, on its own
    /// thread named `<name>-<id>`.
    pub fn start(name: &str, serve: impl Fn(Conn) + Send + Sync + 'static) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let base = Arc::new(Base {
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            handlers: Mutex::new(Vec::new()),
        });
        let b = Arc::clone(&base);
        let name = name.to_string();
        let serve = Arc::new(serve);
        let accept = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(&listener, &b, &name, &serve))
            .expect("spawn accept thread");
        FakeHttp {
            addr,
            base,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open right now (idle keep-alive ones included).
    pub fn open_connections(&self) -> usize {
        self.base.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn total_connections(&self) -> usize {
        self.base.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.base.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let handlers = std::mem::take(&mut *self.base.handlers.lock());
        for h in handlers {
            let _ = h.join();
        }
    }
}

fn accept_loop<F: Fn(Conn) + Send + Sync + 'static>(
    listener: &TcpListener,
    base: &Arc<Base>,
    name: &str,
    serve: &Arc<F>,
) {
    while !base.stop.load(Ordering::SeqCst) {
        if base.open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let id = base.accepted.fetch_add(1, Ordering::SeqCst);
                base.open.fetch_add(1, Ordering::SeqCst);
                let conn = Conn {
                    stream,
                    id,
                    buf: Vec::new(),
                    base: Arc::clone(base),
                };
                let serve = Arc::clone(serve);
                let h = std::thread::Builder::new()
                    .name(format!("{name}-{id}"))
                    .spawn(move || {
                        let base = Arc::clone(&conn.base);
                        let _ = conn.stream.set_nonblocking(false);
                        let _ = conn.stream.set_nodelay(true);
                        // A client that stops reading must not pin this thread (or Drop).
                        let _ = conn.stream.set_write_timeout(Some(Duration::from_secs(10)));
                        serve(conn);
                        base.open.fetch_sub(1, Ordering::SeqCst);
                    })
                    .expect("spawn connection thread");
                let mut handlers = base.handlers.lock();
                handlers.retain(|h| !h.is_finished());
                handlers.push(h);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}
