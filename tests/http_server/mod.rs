//! The HTTP/1.1 server against real clients (curl) and raw sockets that abuse it: limits,
//! slow and idle clients, load shedding, panics, streaming timing, pipelining, shutdown.
//! Every socket has read/write timeouts and every wait is bounded, so nothing can hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use aiproxy::http::{Handler, Lane, Limits, Request, Responder, Server, Version};
use crossbeam_channel::{Receiver, Sender, bounded};

mod next_request;
mod poller_answers;

const IO: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- test handler

/// Routes: `/echo` (body back, request facts and the worker thread's name in headers), `/sleep?ms`, `/stream?n&ms`,
/// `/panic`, `/noreply`, `/block` (until released), `/gone` (reports `client_gone`), `/busy`
/// (the server's load as the handler sees it). Lanes: `/quick/*` and `/busy` quick,
/// `/control/*` control (the rest of the path routes as usual), the rest main.
struct TestHandler {
    started: Sender<()>,
    release: Receiver<()>,
    gone: Sender<(bool, bool)>,
}

struct Probes {
    started: Receiver<()>,
    release: Sender<()>,
    gone: Receiver<(bool, bool)>,
}

fn param(req: &Request, key: &str, default: u64) -> u64 {
    req.query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

impl Handler for TestHandler {
    fn lane(&self, _method: &str, path: &str) -> Lane {
        if path.starts_with("/quick/") || path == "/busy" {
            Lane::Quick
        } else if path.starts_with("/control/") {
            Lane::Control
        } else {
            Lane::Main
        }
    }

    fn answered_by_poller(&self, _method: &str, path: &str) -> bool {
        path.starts_with("/poller/")
    }

    fn handle(&self, req: Request, resp: &mut Responder<'_>) {
        let path = req.path.as_str();
        let path = path
            .strip_prefix("/quick")
            .or_else(|| path.strip_prefix("/poller"))
            .or_else(|| path.strip_prefix("/control"))
            .unwrap_or(path)
            .to_string();
        match path.as_str() {
            "/busy" => {
                let b = resp.busy();
                let text = format!(
                    "{} {} {} {}",
                    b.in_flight,
                    b.max_in_flight,
                    b.draining,
                    b.saturated()
                );
                let _ = resp.send(200, &[], text.as_bytes());
            }
            "/echo" => {
                let version = if req.version == Version::Http10 {
                    "1.0"
                } else {
                    "1.1"
                };
                let worker = thread::current().name().unwrap_or_default().to_string();
                let headers = [
                    ("X-Method", req.method.as_str()),
                    ("X-Query", req.query.as_str()),
                    ("X-Version", version),
                    ("X-Worker", worker.as_str()),
                    ("Content-Type", "application/octet-stream"),
                ];
                let _ = resp.send(200, &headers, &req.body);
            }
            "/sleep" => {
                thread::sleep(Duration::from_millis(param(&req, "ms", 100)));
                let _ = resp.send(200, &[], b"slept");
            }
            "/stream" => {
                let (n, ms) = (param(&req, "n", 5), param(&req, "ms", 100));
                let Ok(mut body) = resp.stream(200, &[("Content-Type", "text/event-stream")])
                else {
                    return;
                };
                for i in 0..n {
                    if i > 0 {
                        thread::sleep(Duration::from_millis(ms));
                    }
                    if body.write(format!("data: {i}\n\n").as_bytes()).is_err() {
                        return;
                    }
                }
                let _ = body.finish();
            }
            "/lazy" => {
                // The head waits for the first chunk; the end leaves with the last one.
                let Ok(mut body) = resp.stream_lazily(200, &[]) else {
                    return;
                };
                thread::sleep(Duration::from_millis(param(&req, "ms", 300)));
                if body.write(b"data: 0\n\n").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
                let _ = body.finish_with(b"data: 1\n\n");
            }
            "/big" => {
                let body = vec![b'x'; param(&req, "mib", 8) as usize * 1024 * 1024];
                let _ = resp.send(200, &[], &body);
            }
            "/panic" => panic!("test handler panics on purpose"),
            "/noreply" => {}
            "/block" => {
                let _ = self.started.send_timeout((), IO);
                let _ = self.release.recv_timeout(Duration::from_secs(10));
                let _ = resp.send(200, &[], b"released");
            }
            "/gone" => {
                // Watches `client_gone` for `ms` (writing a small chunk every 50 ms when
                // `probe=1`, as the gateway's keep-alives do), then reports (before, after).
                let Ok(mut body) = resp.stream(200, &[]) else {
                    return;
                };
                let probe = param(&req, "probe", 0) == 1;
                let before = body.client_gone();
                let deadline = Instant::now() + Duration::from_millis(param(&req, "ms", 5000));
                let mut i = 0u32;
                while !body.client_gone() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                    i += 1;
                    if probe && i.is_multiple_of(5) {
                        let _ = body.write(b": p\n\n");
                    }
                }
                let _ = self.gone.send_timeout((before, body.client_gone()), IO);
                let _ = body.finish();
            }
            _ => {
                let _ = resp.send(404, &[("Content-Type", "text/plain")], b"not found");
            }
        }
    }
}

fn start(limits: Limits) -> (Server, Probes) {
    let (started_tx, started_rx) = bounded(16);
    let (release_tx, release_rx) = bounded(16);
    let (gone_tx, gone_rx) = bounded(16);
    let handler = TestHandler {
        started: started_tx,
        release: release_rx,
        gone: gone_tx,
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::start(listener, limits, Arc::new(handler)).unwrap();
    (
        server,
        Probes {
            started: started_rx,
            release: release_tx,
            gone: gone_rx,
        },
    )
}

fn small_limits() -> Limits {
    Limits {
        workers: 4,
        max_in_flight: 16,
        max_connections: 1000,
        // The tests that open hundreds of sockets all come from 127.0.0.1.
        max_connections_per_ip: 0,
        ..Limits::default()
    }
}

// ---------------------------------------------------------------- raw client

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO)).unwrap();
    s.set_write_timeout(Some(IO)).unwrap();
    s
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.ends_with("\r\n"), "truncated line {line:?}");
    line.trim_end().to_string()
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let status_line = read_line(r);
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect(&status_line);
    let mut headers = Vec::new();
    loop {
        let line = read_line(r);
        if line.is_empty() {
            return (status, headers);
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.to_string(), v.trim().to_string()));
    }
}

/// One chunk of a chunked body; `None` at the terminator (trailers must be empty).
fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let size = usize::from_str_radix(&read_line(r), 16).unwrap();
    if size == 0 {
        assert_eq!(read_line(r), "");
        return None;
    }
    let mut data = vec![0; size];
    r.read_exact(&mut data).unwrap();
    assert_eq!(read_line(r), "");
    Some(data)
}

fn read_response(r: &mut impl BufRead, head_request: bool) -> Resp {
    let (status, headers) = read_head(r);
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 {
        return resp;
    }
    if let Some(n) = resp.header("content-length") {
        resp.body = vec![0; n.parse().unwrap()];
        r.read_exact(&mut resp.body).unwrap();
    } else if resp.header("transfer-encoding") == Some("chunked") {
        while let Some(chunk) = read_chunk(r) {
            resp.body.extend(chunk);
        }
    } else {
        r.read_to_end(&mut resp.body).unwrap();
    }
    resp
}

/// Send raw bytes on a new connection and read one response.
fn exchange(addr: SocketAddr, raw: &[u8]) -> (Resp, BufReader<TcpStream>) {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    (read_response(&mut r, false), r)
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes()).0
}

/// After the server answered and closed, the next read sees EOF (or a reset), never a hang.
fn assert_closed(r: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "unexpected bytes after close: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// Wait until the server counts `n` open connections (its poller registered them).
fn wait_open(server: &Server, n: usize) {
    let stats = server.stats();
    crate::support::wait::until(
        Duration::from_secs(10),
        &format!("{n} open connections"),
        || stats.read().1 >= n,
    );
}

/// A normal request must still be answered quickly.
fn assert_served_within(addr: SocketAddr, limit: Duration) {
    let t = Instant::now();
    let resp = get(addr, "/echo?probe=1");
    let took = t.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-query"), Some("probe=1"));
    assert!(took < limit, "normal request took {took:?}");
}

fn curl(args: &[&str]) -> std::process::Output {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output();
    let out = out.expect("curl must be installed");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------- real clients

#[test]
fn curl_keep_alive_reuses_one_connection() {
    let (server, _p) = start(small_limits());
    let base = format!("http://{}", server.local_addr());
    let urls = [
        format!("{base}/echo"),
        format!("{base}/echo?b"),
        format!("{base}/stream?n=2&ms=10"),
        format!("{base}/echo?c"),
    ];
    let mut args = vec!["-w", "%{http_code} %{num_connects}\n"];
    for url in &urls {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let out = curl(&args);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 1\n200 0\n200 0\n200 0\n"
    );
}

#[test]
fn curl_http10_gets_close_delimited_stream_and_plain_responses() {
    let (server, _p) = start(small_limits());
    let base = format!("http://{}", server.local_addr());
    let out = curl(&["--http1.0", "-i", &format!("{base}/stream?n=3&ms=20")]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Connection: close"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
    let out = curl(&[
        "--http1.0",
        "-i",
        &format!("{base}/echo"),
        "--data-binary",
        "hello",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("X-Version: 1.0"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
}

#[test]
fn curl_expect_100_continue_is_answered_at_once() {
    let (server, _p) = start(small_limits());
    let url = format!("http://{}/echo", server.local_addr());
    let body = "x".repeat(5000);
    let t = Instant::now();
    let out = curl(&[
        "-v",
        "--expect100-timeout",
        "8",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &body,
        &url,
    ]);
    // Told to wait 8 s for the 100 before sending the body anyway, curl is done at once only if
    // the 100 came at once (and its log shows it did).
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP/1.1 100 Continue"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), body);
}

#[test]
fn curl_chunked_upload_is_decoded() {
    let (server, _p) = start(small_limits());
    let url = format!("http://{}/echo", server.local_addr());
    let body: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let out = curl(&[
        "-v",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &body,
        &url,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Transfer-Encoding: chunked"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), body);
}

// ---------------------------------------------------------------- protocol basics

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    let chunked = "POST /echo?3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nthr\r\n2\r\nee\r\n0\r\n\r\n";
    let all = format!(
        "POST /echo?1 HTTP/1.1\r\nContent-Length: 3\r\n\r\none\
         GET /stream?n=2&ms=1 HTTP/1.1\r\n\r\n\
         {chunked}\
         HEAD /echo?4 HTTP/1.1\r\n\r\n\
         GET /echo?5 HTTP/1.1\r\nConnection: close\r\n\r\n"
    );
    s.write_all(all.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let one = read_response(&mut r, false);
    assert_eq!(
        (one.header("x-query"), one.text().as_str()),
        (Some("1"), "one")
    );
    assert_eq!(
        read_response(&mut r, false).text(),
        "data: 0\n\ndata: 1\n\n"
    );
    let three = read_response(&mut r, false);
    assert_eq!(
        (three.header("x-query"), three.text().as_str()),
        (Some("3"), "three")
    );
    let four = read_response(&mut r, true);
    assert_eq!(
        (four.header("x-method"), four.header("content-length")),
        (Some("HEAD"), Some("0"))
    );
    let five = read_response(&mut r, false);
    assert_eq!(
        (five.header("x-query"), five.header("connection")),
        (Some("5"), Some("close"))
    );
    assert_closed(&mut r);
}

#[test]
fn head_request_gets_headers_but_no_body() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    s.write_all(b"HEAD /stream?n=3&ms=1 HTTP/1.1\r\n\r\nGET /echo?after HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let head = read_response(&mut r, true);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    // The next response follows immediately: no body bytes were sent for HEAD.
    let next = read_response(&mut r, false);
    assert_eq!(next.header("x-query"), Some("after"));
}

#[test]
fn http10_keep_alive_is_honoured_and_plain_10_closes() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /echo?a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let a = read_response(&mut r, false);
    assert_eq!(a.header("connection"), Some("keep-alive"));
    s.write_all(b"GET /echo?b HTTP/1.0\r\n\r\n").unwrap();
    let b = read_response(&mut r, false);
    assert_eq!(
        (b.header("x-query"), b.header("connection")),
        (Some("b"), Some("close"))
    );
    assert_closed(&mut r);
}

#[test]
fn bare_lf_request_is_served() {
    let (server, _p) = start(small_limits());
    let (resp, _) = exchange(
        server.local_addr(),
        b"POST /echo?lf HTTP/1.1\nContent-Length: 2\nConnection: close\n\nok",
    );
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
}

#[test]
fn garbage_http2_preface_and_smuggling_attempts_get_400_and_close() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    let cases: &[(&[u8], u16)] = &[
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
        (b"GARBAGE\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 3\r\n\r\n", 417),
    ];
    for (raw, status) in cases {
        let t = Instant::now();
        let (resp, mut r) = exchange(addr, raw);
        assert_eq!(resp.status, *status, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(resp.header("connection"), Some("close"));
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert!(v["error"]["message"].is_string());
        assert_closed(&mut r);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "slow rejection {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn handler_panic_gives_500_and_the_server_keeps_working() {
    let (server, _p) = start(Limits {
        workers: 1,
        ..small_limits()
    });
    let addr = server.local_addr();
    for _ in 0..3 {
        let (resp, mut r) = exchange(addr, b"GET /panic HTTP/1.1\r\n\r\n");
        assert_eq!(resp.status, 500);
        assert_eq!(resp.header("connection"), Some("close"));
        assert_closed(&mut r);
    }
    // Only one worker: it survived the panics.
    assert_eq!(get(addr, "/echo?ok").status, 200);
    let (resp, _) = exchange(addr, b"GET /noreply HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 500);
}

// ---------------------------------------------------------------- limits and abuse

#[test]
fn huge_declared_content_length_gets_413_without_reading_and_server_lives() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    let t = Instant::now();
    let (resp, mut r) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nContent-Length: 100000000000\r\n\r\n",
    );
    assert_eq!(resp.status, 413);
    assert_closed(&mut r);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_served_within(addr, Duration::from_secs(2));
    // Same with Expect: answered before any body is sent, and no 100 Continue first.
    let raw =
        b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100000000000\r\n\r\n";
    let (resp, _) = exchange(addr, raw);
    assert_eq!(resp.status, 413);
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let (server, _p) = start(Limits {
        max_body_bytes: 1000,
        ..small_limits()
    });
    let mut s = connect(server.local_addr());
    s.write_all(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        s.write_all(format!("190\r\n{}\r\n", "a".repeat(400)).as_bytes())
            .unwrap();
    }
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).status, 413);
}

#[test]
fn one_mib_header_line_gets_431_and_server_lives() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    // Written from another thread: the server stops reading after 32 KiB, so the write may
    // fail with a reset while we read the 431.
    let writer = thread::spawn(move || {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
        let _ = w.write_all(big.as_bytes());
    });
    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r, false);
    assert_eq!(resp.status, 431);
    let _ = s.shutdown(Shutdown::Both);
    writer.join().unwrap();
    assert_served_within(addr, Duration::from_secs(2));
}

#[test]
fn too_many_headers_gets_431() {
    let (server, _p) = start(Limits {
        max_headers: 10,
        ..small_limits()
    });
    let mut raw = String::from("GET /echo HTTP/1.1\r\n");
    for i in 0..11 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert_eq!(exchange(server.local_addr(), raw.as_bytes()).0.status, 431);
}

#[test]
fn three_hundred_idle_connections_do_not_block_service() {
    let (server, _p) = start(Limits {
        workers: 2,
        ..small_limits()
    });
    let addr = server.local_addr();
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(addr)).collect();
    wait_open(&server, 300);
    assert_served_within(addr, Duration::from_secs(2));
    // Also idle keep-alive connections that already made a request.
    let mut kept = Vec::new();
    for _ in 0..50 {
        let mut s = connect(addr);
        s.write_all(b"GET /echo HTTP/1.1\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        assert_eq!(read_response(&mut r, false).status, 200);
        kept.push(r);
    }
    assert_served_within(addr, Duration::from_secs(2));
    drop(idle);
}

#[test]
fn three_hundred_slowloris_connections_do_not_block_service() {
    let (server, _p) = start(Limits {
        workers: 2,
        ..small_limits()
    });
    let addr = server.local_addr();
    let mut slow: Vec<TcpStream> = (0..300).map(|_| connect(addr)).collect();
    for s in &mut slow {
        s.write_all(b"POST /echo HTTP/1.1\r\nX-Slow: ").unwrap();
    }
    let (stop_tx, stop_rx) = bounded::<()>(1);
    let (round_tx, round_rx) = bounded::<()>(1);
    let trickler = thread::spawn(move || {
        while stop_rx.recv_timeout(Duration::from_millis(50)).is_err() {
            for s in &mut slow {
                let _ = s.write_all(b"a");
            }
            let _ = round_tx.try_send(());
        }
        slow
    });
    // Serve only once all of them are open and their heads are growing.
    wait_open(&server, 300);
    for _ in 0..2 {
        round_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    for _ in 0..3 {
        assert_served_within(addr, Duration::from_secs(2));
    }
    // Slow bodies too: the heads complete, the bodies trickle; the service is unaffected.
    let mut slow_bodies: Vec<TcpStream> = (0..50).map(|_| connect(addr)).collect();
    for s in &mut slow_bodies {
        s.write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc")
            .unwrap();
    }
    assert_served_within(addr, Duration::from_secs(2));
    stop_tx.send(()).unwrap();
    drop(trickler.join().unwrap());
}

#[test]
fn slow_head_gets_408_and_slow_body_gets_408() {
    let limits = Limits {
        head_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(300),
        ..small_limits()
    };
    let (server, _p) = start(limits);
    let addr = server.local_addr();
    for partial in [
        &b"GET /echo HTTP/1.1\r\nX-Slow: "[..],
        b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
    ] {
        let t = Instant::now();
        let (resp, mut r) = exchange(addr, partial);
        assert_eq!(resp.status, 408);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_closed(&mut r);
    }
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (server, _p) = start(Limits {
        idle_timeout: Duration::from_millis(300),
        ..small_limits()
    });
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /echo HTTP/1.1\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).status, 200);
    let t = Instant::now();
    assert_closed(&mut r);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn connection_cap_answers_503() {
    let (server, _p) = start(Limits {
        max_connections: 2,
        ..small_limits()
    });
    let addr = server.local_addr();
    let _a = connect(addr);
    let _b = connect(addr);
    wait_open(&server, 2);
    let (resp, mut r) = exchange(addr, b"GET /echo HTTP/1.1\r\n\r\n");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_closed(&mut r);
    drop((_a, _b));
    // Slots free once the poller sees the closes.
    let deadline = Instant::now() + Duration::from_secs(1);
    while get(addr, "/echo").status != 200 {
        assert!(Instant::now() < deadline, "slots never freed");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A client socket bound to `src` (any of 127.0.0.0/8 works on Linux), so one test can be
/// several clients.
fn connect_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(dst) = addr else {
        panic!("IPv4 only")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket owned by the TcpStream at once; bind/connect get valid
    // sockaddr_in structs of the stated length.
    let s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        let local = sockaddr(src, 0);
        let rc = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "bind {src}: {}", std::io::Error::last_os_error());
        let remote = sockaddr(*dst.ip(), dst.port());
        let rc = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        s
    };
    s.set_read_timeout(Some(IO)).unwrap();
    s.set_write_timeout(Some(IO)).unwrap();
    s
}

/// Issue 11 (#8): one client holding idle sockets can no longer take every connection slot:
/// past `max_connections_per_ip` its next connection gets 503, while another address is served.
#[test]
fn per_address_connection_cap_leaves_room_for_other_clients() {
    let cap = 20;
    let (server, _p) = start(Limits {
        max_connections: cap + 5,
        max_connections_per_ip: cap,
        ..small_limits()
    });
    let addr = server.local_addr();
    let hog = std::net::Ipv4Addr::new(127, 0, 0, 1);
    // Each has sent the start of a head (the kernel hands a silent connection over only after
    // a second: deferred accept), so the poller has accepted them all once it answers a
    // request from elsewhere.
    let mut idle: Vec<TcpStream> = (0..cap)
        .map(|_| {
            let mut s = connect_from(hog, addr);
            s.write_all(b"GET /echo").unwrap();
            s
        })
        .collect();
    let other = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut s = connect_from(other, addr);
    s.write_all(b"GET /echo?from=other HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut BufReader::new(s), false);
    assert_eq!(resp.status, 200, "another address is served");
    let mut s = connect_from(hog, addr);
    s.write_all(b"GET /echo HTTP/1.1\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false);
    assert_eq!(resp.status, 503, "over the per-address cap");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(
        resp.text()
            .contains("too many connections from this address")
    );
    assert_closed(&mut r);
    // A third address too, several times over.
    for _ in 0..3 {
        let mut s = connect_from(std::net::Ipv4Addr::new(127, 0, 0, 3), addr);
        s.write_all(b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut BufReader::new(s), false).status, 200);
    }
    // Closing one of the hog's sockets gives its slot back.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = connect_from(hog, addr);
        s.write_all(b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        if read_response(&mut BufReader::new(s), false).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never given back");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 11 (#8): a connection that never sends a byte is closed after `first_byte_timeout`,
/// not after the (long) keep-alive idle timeout; blank lines do not count as a request.
#[test]
fn silent_connections_close_after_the_first_byte_timeout() {
    let (server, _p) = start(Limits {
        first_byte_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        ..small_limits()
    });
    let addr = server.local_addr();
    let t = Instant::now();
    let silent = connect(addr);
    let blank = connect(addr);
    (&blank).write_all(b"\r\n\r\n").unwrap();
    let mut busy = connect(addr);
    busy.write_all(b"GET /echo HTTP/1.1\r\n\r\n").unwrap();
    let mut busy = BufReader::new(busy);
    assert_eq!(read_response(&mut busy, false).status, 200);
    for s in [silent, blank] {
        let mut r = BufReader::new(s);
        assert_closed(&mut r);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    // A connection that has made a request falls under the idle timeout instead.
    thread::sleep(Duration::from_millis(300));
    busy.get_mut()
        .write_all(b"GET /echo?again HTTP/1.1\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut busy, false);
    assert_eq!((resp.status, resp.header("x-query")), (200, Some("again")));
}

/// Issue 11 (#9): framing values with Unicode whitespace or junk after a chunk size are
/// refused and the connection closed, so the pipelined request behind them is never served
/// (before, each of these was read as a valid length and `GET /smuggled` came out as a second
/// request).
#[test]
fn unicode_whitespace_and_chunk_junk_cannot_smuggle_a_request() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    let smuggled = "GET /echo?smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = [
        format!("POST /echo HTTP/1.1\r\nContent-Length: \u{a0}2\r\n\r\nok{smuggled}"),
        format!("POST /echo HTTP/1.1\r\nContent-Length: 2\u{a0}\r\n\r\nok{smuggled}"),
        format!(
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\u{a0}\r\n\r\n2\r\nok\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2 junk\r\nok\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\u{a0}\r\nok\r\n0\r\n\r\n{smuggled}"
        ),
    ];
    for raw in &cases {
        let (resp, mut r) = exchange(addr, raw.as_bytes());
        assert_eq!(resp.status, 400, "{raw:?}: {}", resp.text());
        assert_eq!(resp.header("connection"), Some("close"));
        assert_eq!(resp.header("x-query"), None);
        // Nothing else comes: no response to the smuggled request.
        assert_closed(&mut r);
    }
    // The same requests with plain whitespace are fine, and the pipelined one is answered
    // as the separate request it is.
    let raw = format!("POST /echo HTTP/1.1\r\nContent-Length: \t2 \r\n\r\nok{smuggled}");
    let (resp, mut r) = exchange(addr, raw.as_bytes());
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    let second = read_response(&mut r, false);
    assert_eq!(second.header("x-query"), Some("smuggled"));
}

#[test]
fn in_flight_cap_answers_503_with_retry_after() {
    let (server, probes) = start(Limits {
        workers: 1,
        max_in_flight: 1,
        ..small_limits()
    });
    let addr = server.local_addr();
    let mut blocked = connect(addr);
    blocked.write_all(b"GET /block HTTP/1.1\r\n\r\n").unwrap();
    probes.started.recv_timeout(IO).expect("handler started");

    let (resp, mut r) = exchange(addr, b"GET /echo HTTP/1.1\r\n\r\n");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(v["error"]["param"].is_null() && v["error"]["code"].is_null());
    assert_closed(&mut r);
    // A client waiting for 100 Continue is refused before it uploads anything.
    let raw = b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let (resp, _) = exchange(addr, raw);
    assert_eq!(resp.status, 503);

    probes.release.send(()).unwrap();
    let mut r = BufReader::new(blocked);
    assert_eq!(read_response(&mut r, false).text(), "released");
    // The slot frees when the poller takes the connection back, just after the client has its
    // response, so allow a moment.
    let deadline = Instant::now() + Duration::from_secs(1);
    while get(addr, "/echo").status != 200 {
        assert!(Instant::now() < deadline, "slot never freed");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Issue 16: a saturated main pool (every worker busy, the in-flight cap reached) cannot delay
/// or shed requests of the quick and control lanes, each with its own workers and queue, and
/// a handler can see the saturation (for a readiness answer). Fails on the old server, which
/// had one pool: the quick request waited or got 503.
#[test]
fn quick_and_control_lanes_answer_while_the_main_pool_is_saturated() {
    let (server, probes) = start(Limits {
        workers: 1,
        max_in_flight: 1,
        quick_workers: 1,
        control_workers: 1,
        lane_queue: 4,
        ..small_limits()
    });
    let addr = server.local_addr();
    assert_eq!(get(addr, "/busy").text(), "0 1 false false");
    let mut blocked = connect(addr);
    blocked
        .write_all(
            b"GET /block HTTP/1.1

",
        )
        .unwrap();
    probes.started.recv_timeout(IO).expect("handler started");
    assert_eq!(get(addr, "/echo").status, 503, "the main lane is full");

    for _ in 0..20 {
        let t = Instant::now();
        let r = get(addr, "/quick/echo");
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    assert_eq!(get(addr, "/busy").text(), "1 1 false true");
    // A control request that blocks holds the control worker only: quick still answers.
    let mut ctl = connect(addr);
    ctl.write_all(
        b"GET /control/block HTTP/1.1

",
    )
    .unwrap();
    probes
        .started
        .recv_timeout(IO)
        .expect("control handler started");
    assert_eq!(get(addr, "/quick/sleep?ms=1").text(), "slept");
    // Expect: 100-continue is judged by the request's own lane, before the body is sent.
    let mut c = connect(addr);
    c.write_all(b"POST /quick/echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    assert_eq!(read_line(&mut r).trim_end(), "HTTP/1.1 100 Continue");
    read_line(&mut r);
    c.write_all(b"ok").unwrap();
    let resp = read_response(&mut r, false);
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));

    for _ in 0..2 {
        probes.release.send(()).unwrap();
    }
    let mut r = BufReader::new(blocked);
    assert_eq!(read_response(&mut r, false).text(), "released");
    let mut r = BufReader::new(ctl);
    assert_eq!(read_response(&mut r, false).text(), "released");
}

/// A side lane's queue is bounded like the main one: past `lane_queue`, 503.
#[test]
fn a_full_control_lane_sheds_with_503() {
    let (server, probes) = start(Limits {
        control_workers: 1,
        lane_queue: 1,
        ..small_limits()
    });
    let addr = server.local_addr();
    let mut ctl = connect(addr);
    ctl.write_all(b"GET /control/block HTTP/1.1\r\n\r\n")
        .unwrap();
    probes
        .started
        .recv_timeout(IO)
        .expect("control handler started");
    let r = get(addr, "/control/echo");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        get(addr, "/echo").status,
        200,
        "the main lane is not affected"
    );
    probes.release.send(()).unwrap();
    let mut r = BufReader::new(ctl);
    assert_eq!(read_response(&mut r, false).text(), "released");
}

// ---------------------------------------------------------------- streaming

#[test]
fn streamed_chunks_arrive_one_by_one() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /stream?n=5&ms=100 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    assert_eq!(status, 200);
    assert!(headers.contains(&("Transfer-Encoding".into(), "chunked".into())));
    let t0 = Instant::now();
    let mut arrivals = Vec::new();
    while let Some(chunk) = read_chunk(&mut r) {
        arrivals.push((t0.elapsed(), String::from_utf8(chunk).unwrap()));
    }
    let texts: Vec<&str> = arrivals.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "data: 0\n\n",
            "data: 1\n\n",
            "data: 2\n\n",
            "data: 3\n\n",
            "data: 4\n\n"
        ]
    );
    // One by one: each 100 ms apart, not bunched (the lower bound is the point; the upper one
    // is twice the nominal gap plus a second).
    assert!(
        arrivals[0].0 < Duration::from_millis(1200),
        "first event late: {arrivals:?}"
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(60) && gap < Duration::from_millis(1200),
            "{arrivals:?}"
        );
    }
    // The connection is still usable.
    r.get_mut()
        .write_all(b"GET /echo?again HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut r, false).header("x-query"),
        Some("again")
    );
}

#[test]
fn a_lazy_stream_sends_its_head_with_the_first_chunk_and_its_end_with_the_last() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /lazy?ms=400 HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let early = s.read(&mut buf);
    assert!(
        early.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "the head went out before the first chunk: {early:?}"
    );
    s.set_read_timeout(Some(IO)).unwrap();
    let n = s.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    assert!(first.ends_with("\r\n\r\n9\r\ndata: 0\n\n\r\n"), "{first:?}");
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"9\r\ndata: 1\n\n\r\n0\r\n\r\n");
    // The connection is still usable.
    s.write_all(b"GET /echo?again HTTP/1.1\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(
        read_response(&mut r, false).header("x-query"),
        Some("again")
    );
}

#[test]
fn http10_stream_is_raw_and_closes_at_the_end() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /stream?n=3&ms=30 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.text(), "data: 0\n\ndata: 1\n\ndata: 2\n\n");
}

#[test]
fn client_gone_turns_true_after_the_peer_closes() {
    let (server, probes) = start(small_limits());
    let s = connect(server.local_addr());
    (&s).write_all(b"GET /gone?probe=1 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_head(&mut r).0, 200);
    thread::sleep(Duration::from_millis(100));
    assert!(probes.gone.is_empty(), "handler must still see the client");
    drop(r);
    let (before, after) = probes
        .gone
        .recv_timeout(Duration::from_secs(3))
        .expect("handler noticed");
    assert!(!before && after);
}

#[test]
fn client_gone_turns_true_at_once_after_a_reset() {
    let (server, probes) = start(small_limits());
    let s = connect(server.local_addr());
    (&s).write_all(b"GET /gone HTTP/1.1\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_head(&mut r).0, 200);
    let s = r.into_inner();
    // SO_LINGER 0: close sends a reset instead of a FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid, correctly sized linger struct on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(s);
    let (before, after) = probes
        .gone
        .recv_timeout(Duration::from_secs(3))
        .expect("handler noticed without writing");
    // `before` races with the reset (the client closes as soon as it has the head).
    let _ = before;
    assert!(after);
}

/// Issue 11 (#3): a client that sends its request and then half-closes (`shutdown(Write)`) is
/// still there and gets the whole response; before, the FIN alone counted as "gone".
#[test]
fn half_closed_client_is_not_gone_and_reads_the_response() {
    let (server, probes) = start(small_limits());
    let s = connect(server.local_addr());
    (&s).write_all(b"GET /gone?probe=1&ms=400 HTTP/1.1\r\n\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_head(&mut r).0, 200);
    let (before, after) = probes
        .gone
        .recv_timeout(Duration::from_secs(3))
        .expect("handler finished");
    assert!(!before && !after, "a half-close is not a hang-up");
    let mut chunks = 0;
    while let Some(c) = read_chunk(&mut r) {
        assert_eq!(c, b": p\n\n");
        chunks += 1;
    }
    assert!(
        chunks >= 3,
        "the client read the stream to its end ({chunks} chunks)"
    );
}

// ---------------------------------------------------------------- shutdown

#[test]
fn shutdown_drains_an_in_flight_stream_and_stops_accepting() {
    let (server, _p) = start(small_limits());
    let addr = server.local_addr();
    // A kept-alive connection, idle after its first request.
    let mut idle = BufReader::new(connect(addr));
    idle.get_mut()
        .write_all(b"GET /echo HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).status, 200);
    let mut s = connect(addr);
    s.write_all(b"GET /stream?n=5&ms=100 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_head(&mut r).0, 200);
    assert_eq!(read_chunk(&mut r).unwrap(), b"data: 0\n\n");

    let server = Arc::new(server);
    let stopper = {
        let server = Arc::clone(&server);
        thread::spawn(move || {
            let t = Instant::now();
            (server.shutdown(Duration::from_secs(5)), t.elapsed())
        })
    };
    let mut events = 1;
    while read_chunk(&mut r).is_some() {
        events += 1;
    }
    assert_eq!(events, 5, "the stream ran to its end");
    let (finished, took) = stopper.join().unwrap();
    assert!(finished, "drain reported unfinished work");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_closed(&mut r);
    // The idle connection was closed and the listener is gone.
    assert_closed(&mut idle);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    let server = Arc::try_unwrap(server).ok().expect("sole owner");
    server.join();
}

#[test]
fn shutdown_cuts_streams_that_outlive_the_drain() {
    let (server, _p) = start(small_limits());
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /stream?n=50&ms=100 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_head(&mut r).0, 200);
    assert!(read_chunk(&mut r).is_some());
    let t = Instant::now();
    assert!(!server.shutdown(Duration::from_millis(300)));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(
        !server.shutdown(Duration::from_secs(5)),
        "later calls repeat the first result"
    );
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "the stream must not look complete"
    );
    let t = Instant::now();
    server.join();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "workers exit once their handlers notice"
    );
}

// ---------------------------------------------------------------- descriptor exhaustion

const EMFILE_CHILD_ENV: &str = "AIPROXY_HTTP_EMFILE_CHILD";

/// Lowering RLIMIT_NOFILE would break the tests running in parallel, so the scenario runs in a
/// child process: this test binary again, with only `emfile_child` selected.
#[test]
fn accept_survives_running_out_of_descriptors() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "http_server::emfile_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("emfile child timed out");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run: {stdout}"
    );
}

#[test]
#[ignore = "runs only inside accept_survives_running_out_of_descriptors"]
fn emfile_child() {
    assert!(
        std::env::var_os(EMFILE_CHILD_ENV).is_some(),
        "run via accept_survives_running_out_of_descriptors"
    );
    let (server, _p) = start(Limits {
        workers: 2,
        ..small_limits()
    });
    let addr = server.local_addr();
    assert_served_within(addr, Duration::from_secs(2));

    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 20,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to rlimit structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let limit = libc::rlimit {
            rlim_max: old.rlim_max,
            ..limit
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    // Client and server sockets share the process: connect until no descriptor is left, so the
    // server's accept fails with EMFILE while connections wait in the backlog.
    let mut clients = Vec::new();
    while let Ok(s) = TcpStream::connect(addr) {
        clients.push(s);
        assert!(clients.len() < 100, "the descriptor limit did not apply");
    }
    let cpu = || {
        // SAFETY: rusage is plain data; all-zero is a valid value.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a rusage struct.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
        Duration::from_micros((u.ru_utime.tv_sec * 1_000_000 + u.ru_utime.tv_usec) as u64)
            + Duration::from_micros((u.ru_stime.tv_sec * 1_000_000 + u.ru_stime.tv_usec) as u64)
    };
    let before = cpu();
    thread::sleep(Duration::from_millis(600));
    let spent = cpu() - before;
    assert!(
        spent < Duration::from_millis(150),
        "poller spun on EMFILE: {spent:?} CPU in 600 ms"
    );

    drop(clients);
    // SAFETY: restores the limit read above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0) };
    thread::sleep(Duration::from_millis(200));
    assert_served_within(addr, Duration::from_secs(2));
}

#[test]
fn shutdown_deadline_discards_requests_no_worker_started() {
    let (server, probes) = start(Limits {
        workers: 1,
        max_in_flight: 4,
        ..small_limits()
    });
    let addr = server.local_addr();
    let mut running = connect(addr);
    running.write_all(b"GET /block HTTP/1.1\r\n\r\n").unwrap();
    probes
        .started
        .recv_timeout(IO)
        .expect("first handler started");
    let mut queued = connect(addr);
    queued.write_all(b"GET /block HTTP/1.1\r\n\r\n").unwrap();
    // Admitted and queued (no worker free) before the shutdown, or the test tests nothing.
    let stats = server.stats();
    crate::support::wait::until(Duration::from_secs(10), "the second request queued", || {
        stats.read().0 >= 2
    });

    assert!(!server.shutdown(Duration::from_millis(200)));
    probes.release.send(()).unwrap();
    // The queued request is closed unanswered, and its handler never runs.
    assert_closed(&mut BufReader::new(queued));
    assert!(
        probes
            .started
            .recv_timeout(Duration::from_millis(300))
            .is_err()
    );
    assert_closed(&mut BufReader::new(running));
    server.join();
}
