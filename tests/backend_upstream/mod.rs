//! The shared upstream HTTP layer (`backend::upstream`), pinned once for every HTTP backend
//! kind: each test loops over `openai` and `anthropic` against a tiny raw HTTP/1.1 upstream
//! defined here (scripted per test). Redirects are not followed; a connect timeout is a
//! timeout (504) for both; refused credentials and key echoes are scrubbed alike; bodies are
//! asked for and read plain. Pooled connections: `pool.rs`; streams' ticks and deadlines:
//! `ticks.rs`.

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

mod pool;
mod ticks;

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
