//! The shared upstream HTTP layer (`backend::upstream`), pinned once for every HTTP backend
//! kind: each test loops over `openai` and `anthropic` against a tiny raw HTTP/1.1 upstream
//! defined here (scripted per test). Redirects are not followed; a connect timeout is a
//! timeout (504) for both; concurrent and sequential turns reuse pooled connections; refused
//! credentials and key echoes are scrubbed alike; a trickling stream ends at the deadline.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use aiproxy::api::openai::{Message, Role};
use aiproxy::backend::{
    self, Backend, CREDENTIALS_REJECTED, Cancelled, Error, Turn, TurnRequest, TurnSink,
};
use aiproxy::config::{BackendConfig, BackendKind};
use aiproxy::error::ApiError;
use aiproxy::secret::Secret;
use serde_json::Map;

#[derive(Clone, Copy, Debug)]
enum Kind {
    OpenAi,
    Anthropic,
}

const KINDS: [Kind; 2] = [Kind::OpenAi, Kind::Anthropic];
const KEY: &str = "sk-live-0123456789abcdefXYZ";

impl Kind {
    fn backend(self, addr: SocketAddr, timeout: Duration) -> Arc<dyn Backend> {
        backend::build(&BackendConfig {
            kind: match self {
                Kind::OpenAi => BackendKind::OpenAi,
                Kind::Anthropic => BackendKind::Anthropic,
            },
            base_url: format!("http://{addr}/v1"),
            api_key: Some(Secret::new(KEY)),
            default_headers: Default::default(),
            timeout,
            prompt_caching: false,
        })
    }

    /// The path the backend posts to.
    fn path(self) -> &'static str {
        match self {
            Kind::OpenAi => "/v1/chat/completions",
            Kind::Anthropic => "/v1/messages",
        }
    }

    /// A complete non-stream answer whose text is "ok".
    fn answer(self) -> &'static str {
        match self {
            Kind::OpenAi => {
                r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#
            }
            Kind::Anthropic => {
                r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#
            }
        }
    }

    /// The provider's error body.
    fn error_body(self, message: &str) -> String {
        let message = serde_json::Value::String(message.to_string());
        match self {
            Kind::OpenAi => format!(
                r#"{{"error":{{"message":{message},"type":"invalid_request_error","code":"invalid_api_key"}}}}"#
            ),
            Kind::Anthropic => format!(
                r#"{{"type":"error","error":{{"type":"authentication_error","message":{message}}}}}"#
            ),
        }
    }

    /// An event that keeps a stream alive without text.
    fn ping(self) -> &'static str {
        match self {
            Kind::OpenAi => "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}\n\n",
            Kind::Anthropic => "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        }
    }
}

fn turn(
    b: &dyn Backend,
    stream: bool,
    deadline: Instant,
    sink: &mut dyn TurnSink,
) -> Result<Turn, Error> {
    let messages = [Message::text(Role::User, "hi")];
    let params = Map::new();
    b.turn(
        &TurnRequest {
            model: "m",
            messages: &messages,
            tools: &[],
            tool_choice: None,
            final_round: false,
            params: &params,
            extra_body: &params,
            stream,
            deadline,
        },
        sink,
    )
}

fn in_a_minute() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[derive(Default)]
struct Sink {
    text: String,
    idles: usize,
}

impl TurnSink for Sink {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        self.text.push_str(delta);
        Ok(())
    }
    fn idle(&mut self) -> Result<(), Cancelled> {
        self.idles += 1;
        Ok(())
    }
}

/// Writes one response on the connection; `Err` closes it.
type Handler = dyn Fn(&str, &mut TcpStream) -> io::Result<()> + Send + Sync;

/// A raw HTTP/1.1 upstream: keep-alive connections, each request (`Content-Length` bodies)
/// answered by the handler with its path.
struct Fake {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    /// Every request head received (lower-cased header lines).
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    fn new(
        handler: impl Fn(&str, &mut TcpStream) -> io::Result<()> + Send + Sync + 'static,
    ) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (acc, p, hd, st) = (accepted.clone(), paths.clone(), heads.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                acc.fetch_add(1, Ordering::SeqCst);
                let (h, p, hd) = (handler.clone(), p.clone(), hd.clone());
                std::thread::spawn(move || serve(conn, &*h, &p, &hd));
            }
        });
        Fake {
            addr,
            accepted,
            paths,
            heads,
            stop,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    conn: TcpStream,
    handler: &Handler,
    paths: &Mutex<Vec<String>>,
    heads: &Mutex<Vec<String>>,
) {
    let mut out = conn.try_clone().unwrap();
    let mut input = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let mut length = 0;
        let mut head = String::new();
        loop {
            let mut h = String::new();
            if input.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            head.push_str(&h.to_ascii_lowercase());
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        if input.read_exact(&mut body).is_err() {
            return;
        }
        paths.lock().unwrap().push(path.clone());
        heads.lock().unwrap().push(head);
        if handler(&path, &mut out).is_err() {
            return;
        }
    }
}

fn respond(out: &mut TcpStream, status: &str, extra: &str, body: &str) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// A `200` event-stream head (chunked); send events with [`chunk`].
fn sse_head(out: &mut TcpStream) -> io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
}

fn chunk(out: &mut TcpStream, data: &str) -> io::Result<()> {
    write!(out, "{:x}\r\n{data}\r\n", data.len())?;
    out.flush()
}

#[test]
fn redirects_are_not_followed() {
    for kind in KINDS {
        let fake = Fake::new(move |path, out| {
            if path == kind.path() {
                respond(out, "302 Found", "Location: /v1/moved\r\n", "")
            } else {
                respond(out, "200 OK", "", kind.answer())
            }
        });
        let b = kind.backend(fake.addr, Duration::from_secs(5));
        for stream in [false, true] {
            let e = turn(&*b, stream, in_a_minute(), &mut Sink::default()).unwrap_err();
            assert!(
                matches!(&e, Error::Status { status: 302, message, .. } if message.contains("not followed")),
                "{kind:?} stream={stream}: {e:?}"
            );
            assert_eq!(ApiError::from(&e).status, 502, "{kind:?}");
        }
        assert_eq!(fake.paths(), [kind.path(), kind.path()], "{kind:?}");
    }
}

/// A listener whose accept queue is full: further SYNs are dropped, so connecting hangs until
/// the connect timeout (offline, unlike a non-routable address, which may fail at once).
fn blackhole() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a valid listening socket; listen() again only shrinks its accept queue.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (listener, held),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled");
}

#[test]
fn connect_timeout_is_a_timeout_for_every_backend() {
    let (listener, _held) = blackhole();
    let addr = listener.local_addr().unwrap();
    for kind in KINDS {
        let b = kind.backend(addr, Duration::from_secs(1));
        for stream in [false, true] {
            let start = Instant::now();
            let e = turn(&*b, stream, in_a_minute(), &mut Sink::default()).unwrap_err();
            let took = start.elapsed();
            assert_eq!(e, Error::Timeout, "{kind:?} stream={stream}");
            let api = ApiError::from(&e);
            assert_eq!(api.status, 504, "{kind:?}");
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(8),
                "{kind:?} stream={stream}: {took:?}"
            );
        }
    }
}

/// Turns running at once per wave (more than ureq's default pool of 10 idle connections).
const WAVE: usize = 16;
const WAVES: usize = 3;

#[test]
fn pooled_connections_are_reused_by_concurrent_and_sequential_turns() {
    for kind in KINDS {
        // Every request of a wave waits until the whole wave has arrived, so WAVE connections
        // are in use at once; the next wave must find them all in the pool.
        let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
        let g = gate.clone();
        let fake = Fake::new(move |_, out| {
            let (count, cv) = &*g;
            let mut n = count.lock().unwrap();
            *n += 1;
            if *n <= WAVE * WAVES {
                let full = (*n).div_ceil(WAVE) * WAVE;
                cv.notify_all();
                let (_n, timeout) = cv
                    .wait_timeout_while(n, Duration::from_secs(20), |n| *n < full)
                    .unwrap();
                assert!(!timeout.timed_out(), "wave never filled");
            } else {
                drop(n);
            }
            respond(out, "200 OK", "", kind.answer())
        });
        let b = kind.backend(fake.addr, Duration::from_secs(10));
        for wave in 0..WAVES {
            let workers: Vec<_> = (0..WAVE)
                .map(|_| {
                    let b = b.clone();
                    std::thread::spawn(move || {
                        turn(&*b, false, in_a_minute(), &mut Sink::default()).map(|t| t.content)
                    })
                })
                .collect();
            for w in workers {
                assert_eq!(w.join().unwrap().as_deref(), Ok("ok"), "{kind:?}");
            }
            assert_eq!(
                fake.accepted(),
                WAVE,
                "{kind:?}: wave {wave} opened new connections"
            );
        }
        for _ in 0..10 {
            let t = turn(&*b, false, in_a_minute(), &mut Sink::default()).unwrap();
            assert_eq!(t.content, "ok");
        }
        assert_eq!(fake.accepted(), WAVE, "{kind:?}");
        assert_eq!(fake.paths().len(), WAVE * WAVES + 10);
    }
}

#[test]
fn refused_credentials_and_echoed_keys_are_scrubbed_alike() {
    for kind in KINDS {
        let fake = Fake::new(move |_, out| {
            let echo = format!("Incorrect API key provided: {KEY}. Bearer {KEY}");
            respond(out, "401 Unauthorized", "", &kind.error_body(&echo))
        });
        let b = kind.backend(fake.addr, Duration::from_secs(5));
        for stream in [false, true] {
            let e = turn(&*b, stream, in_a_minute(), &mut Sink::default()).unwrap_err();
            assert_eq!(
                e,
                Error::Status {
                    status: 401,
                    message: CREDENTIALS_REJECTED.into(),
                    retry_after: None,
                },
                "{kind:?} stream={stream}"
            );
            let api = ApiError::from(&e);
            assert_eq!(api.status, 502);
            assert!(!api.message.contains(KEY));
        }
        // Any other status passes the upstream's text on, with the key masked.
        let other = Fake::new(move |_, out| {
            let body = kind.error_body(&format!("bad request for key {KEY}"));
            respond(out, "400 Bad Request", "", &body)
        });
        let b = kind.backend(other.addr, Duration::from_secs(5));
        for stream in [false, true] {
            let e = turn(&*b, stream, in_a_minute(), &mut Sink::default()).unwrap_err();
            let Error::Status {
                status: 400,
                message,
                ..
            } = &e
            else {
                panic!("{kind:?}: {e:?}")
            };
            assert!(message.contains("request for key ***"), "{message}");
            assert!(!e.to_string().contains("0123456789"), "{e}");
        }
    }
}

#[test]
fn trickling_streams_end_at_the_deadline() {
    for kind in KINDS {
        for keep_alive in [": keep-alive\n\n", kind.ping()] {
            let closed = Arc::new((Mutex::new(false), Condvar::new()));
            let c = closed.clone();
            let fake = Fake::new(move |_, out| {
                sse_head(out)?;
                // Forever, until the gateway hangs up.
                let err = loop {
                    if let Err(e) = chunk(out, keep_alive) {
                        break e;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                *c.0.lock().unwrap() = true;
                c.1.notify_all();
                Err(err)
            });
            // The per-read timeout never trips (bytes keep coming); only the deadline can.
            let b = kind.backend(fake.addr, Duration::from_secs(10));
            let mut sink = Sink::default();
            let start = Instant::now();
            let e = turn(&*b, true, start + Duration::from_millis(1500), &mut sink).unwrap_err();
            let took = start.elapsed();
            assert_eq!(e, Error::Timeout, "{kind:?} {keep_alive:?}");
            assert_eq!(ApiError::from(&e).status, 504);
            assert!(
                took >= Duration::from_millis(1400) && took < Duration::from_millis(1500 + 3000),
                "{kind:?} {keep_alive:?}: {took:?}"
            );
            assert!(sink.idles >= 1, "{kind:?} {keep_alive:?}: no idle tick");
            assert!(sink.text.is_empty());
            // The upstream connection is closed, not left to trickle on.
            let (lock, cv) = &*closed;
            let (hung_up, _) = cv
                .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(5), |c| !*c)
                .unwrap();
            assert!(
                *hung_up,
                "{kind:?} {keep_alive:?}: upstream connection left open"
            );
        }
    }
}

/// Blocks until the gateway closes the connection (true) or 10 s pass (false).
fn wait_hang_up(out: &mut TcpStream) -> bool {
    out.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match out.read(&mut [0; 64]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

type Flag = Arc<(Mutex<Option<bool>>, Condvar)>;

fn set(flag: &Flag, value: bool) {
    *flag.0.lock().unwrap() = Some(value);
    flag.1.notify_all();
}

fn wait(flag: &Flag) -> Option<bool> {
    let (lock, cv) = &**flag;
    *cv.wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(15), |v| {
        v.is_none()
    })
    .unwrap()
    .0
}

/// The body is read on the request's thread: a silent upstream still gives idle ticks, and its
/// silence ends the turn at the backend's per-read timeout (counted across ticks), long before
/// the deadline, closing the connection.
#[test]
fn a_silent_stream_ticks_and_ends_at_the_read_timeout() {
    for kind in KINDS {
        let hung_up: Flag = Default::default();
        let h = hung_up.clone();
        let fake = Fake::new(move |_, out| {
            sse_head(out)?;
            chunk(out, kind.ping())?;
            set(&h, wait_hang_up(out));
            Err(io::ErrorKind::ConnectionAborted.into())
        });
        let b = kind.backend(fake.addr, Duration::from_millis(2500));
        let mut sink = Sink::default();
        let start = Instant::now();
        let e = turn(&*b, true, in_a_minute(), &mut sink).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e, Error::Timeout, "{kind:?}");
        assert!(
            took >= Duration::from_millis(2400) && took < Duration::from_secs(5),
            "{kind:?}: {took:?}"
        );
        assert!(sink.idles >= 2, "{kind:?}: {} idle ticks", sink.idles);
        assert_eq!(wait(&hung_up), Some(true), "{kind:?}: connection left open");
    }
}

/// A sink whose client leaves at its `leave_at`-th idle tick.
struct Leaving {
    idles: usize,
    leave_at: usize,
}

impl TurnSink for Leaving {
    fn text(&mut self, _delta: &str) -> Result<(), Cancelled> {
        Ok(())
    }
    fn idle(&mut self) -> Result<(), Cancelled> {
        self.idles += 1;
        if self.idles >= self.leave_at {
            return Err(Cancelled);
        }
        Ok(())
    }
}

/// While the upstream thinks before its head, the sink still gets idle ticks; once the client
/// leaves (here at a tick during the body), the turn ends and the upstream connection closes.
#[test]
fn a_slow_head_ticks_and_a_departed_client_closes_the_connection() {
    for kind in KINDS {
        let hung_up: Flag = Default::default();
        let h = hung_up.clone();
        let fake = Fake::new(move |_, out| {
            std::thread::sleep(Duration::from_millis(2500));
            sse_head(out)?;
            // Pings every 100 ms until the gateway hangs up.
            for _ in 0..100 {
                if chunk(out, kind.ping()).is_err() {
                    set(&h, true);
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            set(&h, false);
            Ok(())
        });
        let b = kind.backend(fake.addr, Duration::from_secs(10));
        let mut sink = Leaving {
            idles: 0,
            leave_at: 3,
        };
        let start = Instant::now();
        let e = turn(&*b, true, in_a_minute(), &mut sink).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e, Error::Cancelled, "{kind:?}");
        // Two ticks while waiting for the head (at about 1 s and 2 s), the third after it.
        assert!(
            took >= Duration::from_millis(2500) && took < Duration::from_millis(4500),
            "{kind:?}: {took:?}"
        );
        assert_eq!(wait(&hung_up), Some(true), "{kind:?}: connection left open");
    }
}

/// A client that leaves while the upstream has not even sent its head ends the call at the
/// next tick (the wait for the head runs on the request's thread): no waiting for the head,
/// and the upstream connection is closed.
#[test]
fn a_client_leaving_during_the_head_wait_ends_the_call_at_the_next_tick() {
    for kind in KINDS {
        let hung_up: Flag = Default::default();
        let h = hung_up.clone();
        // Thinks for 10 s before any head; true if the gateway hangs up within 3 s.
        let fake = Fake::new(move |_, out| {
            let asked = Instant::now();
            let hung_up = wait_hang_up(out);
            set(&h, hung_up && asked.elapsed() < Duration::from_secs(3));
            Ok(())
        });
        let b = kind.backend(fake.addr, Duration::from_secs(10));
        let mut sink = Leaving {
            idles: 0,
            leave_at: 1,
        };
        let start = Instant::now();
        let e = turn(&*b, true, in_a_minute(), &mut sink).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e, Error::Cancelled, "{kind:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
            "{kind:?}: {took:?}"
        );
        assert_eq!(wait(&hung_up), Some(true), "{kind:?}: connection left open");
    }
}

/// An upstream response head over the limit (8 KiB) is a clean "too large" (502), for every
/// backend kind; a head of a few KiB, larger than providers send, passes.
#[test]
fn an_oversized_response_head_is_too_large() {
    for kind in KINDS {
        for (filler, ok) in [(4 * 1024, true), (12 * 1024, false), (64 * 1024, false)] {
            let fake = Fake::new(move |_, out| {
                let extra = format!("X-Filler: {}\r\n", "a".repeat(filler));
                respond(out, "200 OK", &extra, kind.answer())
            });
            let b = kind.backend(fake.addr, Duration::from_secs(5));
            for stream in [false, true] {
                let what = format!("{kind:?} stream={stream} filler={filler}");
                match turn(&*b, stream, in_a_minute(), &mut Sink::default()) {
                    Ok(t) => assert!(ok && t.content == "ok", "{what}: {t:?}"),
                    Err(e) => assert!(!ok && e == Error::TooLarge, "{what}: {e:?}"),
                }
            }
        }
    }
}

/// Answers are read plain: every request asks for `identity`, and a body in another coding (an
/// upstream that compresses anyway) is a clear protocol error (502) naming the coding, for
/// every backend kind, stream or not; `Content-Encoding: identity` passes.
#[test]
fn bodies_are_asked_for_and_read_plain() {
    for kind in KINDS {
        for (coding, ok) in [("identity", true), ("gzip", false), ("br, gzip", false)] {
            let fake = Fake::new(move |_, out| {
                let extra = format!("Content-Encoding: {coding}\r\n");
                respond(out, "200 OK", &extra, kind.answer())
            });
            let b = kind.backend(fake.addr, Duration::from_secs(5));
            for stream in [false, true] {
                let what = format!("{kind:?} stream={stream} coding={coding}");
                match turn(&*b, stream, in_a_minute(), &mut Sink::default()) {
                    Ok(t) => assert!(ok && t.content == "ok", "{what}: {t:?}"),
                    Err(Error::Protocol(m)) => {
                        assert!(
                            !ok && m.contains(&format!("{coding}-encoded")),
                            "{what}: {m}"
                        )
                    }
                    Err(e) => panic!("{what}: {e:?}"),
                }
            }
            for head in fake.heads() {
                assert!(head.contains("accept-encoding: identity\r\n"), "{head}");
            }
        }
    }
}

/// Whether `bytes` hold a whole request: its head and its `Content-Length` body.
fn whole_request(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    bytes.len() >= end + 4 + length
}

#[test]
fn a_request_leaves_in_one_write_and_spoiled_pooled_connections_are_not_reused() {
    for kind in KINDS {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Requests 0–2 on one connection, the third answer followed by bytes nobody asked
        // for; request 3 on a second connection, closed by the upstream after its answer;
        // request 4 on a third.
        let upstream = std::thread::spawn(move || {
            let mut whole_at_first_read = Vec::new();
            let mut connections = 0;
            let mut conn: Option<TcpStream> = None;
            for n in 0..5 {
                let c = conn.get_or_insert_with(|| {
                    connections += 1;
                    listener.accept().unwrap().0
                });
                let mut buf = vec![0; 64 * 1024];
                let mut got = c.read(&mut buf).unwrap();
                whole_at_first_read.push(whole_request(&buf[..got]));
                while !whole_request(&buf[..got]) {
                    got += c.read(&mut buf[got..]).unwrap();
                }
                respond(c, "200 OK", "", kind.answer()).unwrap();
                match n {
                    2 => {
                        c.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
                        conn = None;
                    }
                    3 => conn = None,
                    _ => {}
                }
            }
            (whole_at_first_read, connections)
        });
        let b = kind.backend(addr, Duration::from_secs(5));
        for n in 0..5 {
            // The upstream waits in its read; a pooled connection's close or stray bytes
            // have arrived by the next request, as after any idle time.
            std::thread::sleep(Duration::from_millis(50));
            let t = turn(&*b, false, in_a_minute(), &mut Sink::default());
            assert_eq!(t.map(|t| t.content).as_deref(), Ok("ok"), "{kind:?} #{n}");
        }
        let (whole_at_first_read, connections) = upstream.join().unwrap();
        assert_eq!(
            whole_at_first_read, [true; 5],
            "{kind:?}: head and body in one write"
        );
        assert_eq!(connections, 3, "{kind:?}");
    }
}
