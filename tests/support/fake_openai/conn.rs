//! One connection of the fake upstream: read requests (keep-alive), answer from the script,
//! stream SSE with delays and faults, and notice a client that leaves.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::reply::{self, Fault, Kind, Reply, Trickle};
use super::{POLL, Recorded, Shared};

const MAX_HEAD: usize = 64 * 1024;

/// Keep-alive loop: read a request, record it, answer it; until EOF, a fault or stop.
pub(super) fn serve_connection(mut stream: TcpStream, id: usize, shared: &Shared) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf, id, shared) else {
            return;
        };
        shared.requests.lock().push(req.clone());
        let keep = if req.method == "POST" && req.path.ends_with("/chat/completions") {
            let reply = shared
                .script
                .lock()
                .pop_front()
                .unwrap_or_else(|| shared.default.lock().clone())
                .for_request(&req.body);
            answer(&mut stream, &req, &reply, shared)
        } else if req.method == "GET" && req.path.ends_with("/models") {
            let body = json!({"object":"list","data":[{"id":"fake-model","object":"model","created":0,"owned_by":"fake"}]});
            send_full(
                &mut stream,
                200,
                "application/json",
                &[],
                body.to_string().as_bytes(),
            )
        } else {
            let body = json!({"error":{"message":"not found","type":"invalid_request_error"}});
            send_full(
                &mut stream,
                404,
                "application/json",
                &[],
                body.to_string().as_bytes(),
            )
        };
        if !keep {
            return;
        }
    }
}

fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    id: usize,
    shared: &Shared,
) -> Option<Recorded> {
    let _ = stream.set_read_timeout(Some(POLL));
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD || !fill(stream, buf, shared)? {
            return None;
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(&buf[..head_end]).ok()?;
    let method = parsed.method?.to_string();
    let path = parsed.path?.to_string();
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
    while buf.len() < head_end + len {
        if !fill(stream, buf, shared)? {
            return None;
        }
    }
    let raw_body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some(Recorded {
        method,
        path,
        headers,
        body: serde_json::from_slice(&raw_body).unwrap_or(Value::Null),
        raw_body,
        connection: id,
        at: Instant::now(),
    })
}

/// Read more bytes. `Some(false)` on EOF, `None` when stopping or on error; polls `stop`.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, shared: &Shared) -> Option<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Some(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Wait `d`, watching the socket: true if the client left (or the fake is stopping).
fn wait_or_gone(stream: &TcpStream, d: Duration, shared: &Shared) -> bool {
    let end = Instant::now() + d;
    let mut probe = [0u8; 1];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return true;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = stream.set_read_timeout(Some(left.min(POLL)));
        match stream.peek(&mut probe) {
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

/// Answer one completion request. Returns whether the connection stays usable.
fn answer(stream: &mut TcpStream, req: &Recorded, reply: &Reply, shared: &Shared) -> bool {
    if wait_or_gone(stream, reply.head_delay, shared) {
        return false;
    }
    let extra: Vec<(&str, &str)> = reply
        .extra_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let model = req.body["model"]
        .as_str()
        .unwrap_or("fake-model")
        .to_string();
    match &reply.kind {
        Kind::Hang => {
            wait_or_gone(stream, Duration::from_secs(3600), shared);
            false
        }
        Kind::Trickle(what) => {
            let (content_type, piece) = match (req.stream(), what) {
                (false, _) => ("application/json", " ".to_string()),
                (true, Trickle::Comments) => ("text/event-stream", ": keep-alive\n\n".into()),
                (true, Trickle::EmptyDeltas) => (
                    "text/event-stream",
                    format!(
                        "data: {}\n\n",
                        json!({"id":"c","object":"chat.completion.chunk","model":model,
                               "choices":[{"index":0,"delta":{},"finish_reason":null}]})
                    ),
                ),
            };
            if stream
                .write_all(head(200, content_type, &extra, None).as_bytes())
                .is_err()
            {
                return false;
            }
            // Until a write fails (the gateway closed the connection) or the fake stops.
            while write_chunk(stream, piece.as_bytes()) {
                if wait_or_gone(stream, Duration::from_millis(200), shared) {
                    break;
                }
            }
            false
        }
        Kind::Error { status, body } => send_full(
            stream,
            *status,
            "application/json",
            &extra,
            body.to_string().as_bytes(),
        ),
        Kind::Raw {
            status,
            content_type,
            body,
        } => send_full(stream, *status, content_type, &extra, body),
        Kind::InvalidJson if !req.stream() => send_full(
            stream,
            200,
            "application/json",
            &extra,
            b"{\"choices\": [ {\"message\": ",
        ),
        Kind::InvalidJson => stream_events(
            stream,
            reply,
            &extra,
            vec!["{\"choices\": [".into(), "[DONE]".into()],
            shared,
        ),
        kind => {
            let resolved = reply::resolve(kind, &req.body);
            if req.stream() {
                let usage = req.body["stream_options"]["include_usage"] == json!(true);
                let events = reply.stream_events(&resolved, &model, usage);
                stream_events(stream, reply, &extra, events, shared)
            } else {
                let body = reply.completion_body(&resolved, &model).to_string();
                match reply.fault {
                    Fault::None => {
                        send_full(stream, 200, "application/json", &extra, body.as_bytes())
                    }
                    Fault::HangAfter(_) | Fault::CloseAfter(_) | Fault::ErrorAfter(..) => {
                        // Declare the whole body, send half: a truncated answer.
                        let head = head(200, "application/json", &extra, Some(body.len()));
                        let half = &body.as_bytes()[..body.len() / 2];
                        if stream
                            .write_all(head.as_bytes())
                            .and_then(|_| stream.write_all(half))
                            .is_err()
                        {
                            return false;
                        }
                        if matches!(reply.fault, Fault::HangAfter(_)) {
                            wait_or_gone(stream, Duration::from_secs(3600), shared);
                        }
                        false
                    }
                }
            }
        }
    }
}

fn head(status: u16, content_type: &str, extra: &[(&str, &str)], len: Option<usize>) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n",
        reason(status)
    );
    match len {
        Some(n) => h.push_str(&format!("Content-Length: {n}\r\n")),
        None => h.push_str("Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"),
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn send_full(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> bool {
    let h = head(status, content_type, extra, Some(body.len()));
    stream
        .write_all(h.as_bytes())
        .and_then(|_| stream.write_all(body))
        .and_then(|_| stream.flush())
        .is_ok()
}

fn write_chunk(stream: &mut TcpStream, data: &[u8]) -> bool {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).and_then(|_| stream.flush()).is_ok()
}

/// Send SSE events as chunks, one per event, applying delays and faults.
fn stream_events(
    stream: &mut TcpStream,
    reply: &Reply,
    extra: &[(&str, &str)],
    events: Vec<String>,
    shared: &Shared,
) -> bool {
    if stream
        .write_all(head(200, "text/event-stream", extra, None).as_bytes())
        .is_err()
    {
        return false;
    }
    for (i, ev) in events.iter().enumerate() {
        match &reply.fault {
            Fault::CloseAfter(n) if i == *n => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return false;
            }
            Fault::HangAfter(n) if i == *n => {
                wait_or_gone(stream, Duration::from_secs(3600), shared);
                return false;
            }
            Fault::ErrorAfter(n, err) if i == *n => {
                let ok = write_chunk(stream, format!("data: {err}\n\n").as_bytes());
                return ok && write_chunk(stream, b"");
            }
            _ => {}
        }
        if i > 0 && wait_or_gone(stream, reply.chunk_delay, shared) {
            return false;
        }
        if !write_chunk(stream, format!("data: {ev}\n\n").as_bytes()) {
            return false;
        }
    }
    write_chunk(stream, b"")
}
