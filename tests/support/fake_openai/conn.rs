//! One connection of the fake upstream: read requests (keep-alive), answer from the script,
//! stream SSE with delays and faults, and notice a client that leaves.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::reply::{self, Fault, Kind, Reply, Trickle};
use super::{Recorded, Shared};
use crate::support::fake_http::{Conn, reason};

/// Keep-alive loop: read a request, record it, answer it; until EOF, a fault or stop.
pub(super) fn serve_connection(mut conn: Conn, shared: &Shared) {
    while let Some(r) = conn.next_request() {
        let req = Recorded {
            method: r.method,
            path: r.target,
            headers: r.headers,
            body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            raw_body: r.body,
            connection: conn.id,
            at: Instant::now(),
        };
        shared.requests.lock().push(req.clone());
        let keep = if req.method == "POST" && req.path.ends_with("/chat/completions") {
            let reply = shared
                .script
                .lock()
                .pop_front()
                .unwrap_or_else(|| shared.default.lock().clone())
                .for_request(&req.body);
            answer(&mut conn, &req, &reply)
        } else if req.method == "GET" && req.path.ends_with("/models") {
            let body = json!({"object":"list","data":[{"id":"fake-model","object":"model","created":0,"owned_by":"fake"}]});
            conn.send(200, &[], body.to_string().as_bytes())
        } else {
            let body = json!({"error":{"message":"not found","type":"invalid_request_error"}});
            conn.send(404, &[], body.to_string().as_bytes())
        };
        if !keep {
            return;
        }
    }
}

/// Answer one completion request. Returns whether the connection stays usable.
fn answer(conn: &mut Conn, req: &Recorded, reply: &Reply) -> bool {
    if conn.wait_or_gone(reply.head_delay) {
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
            conn.wait_or_gone(Duration::from_secs(3600));
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
            if conn
                .stream
                .write_all(head(200, content_type, &extra, None).as_bytes())
                .is_err()
            {
                return false;
            }
            // Until a write fails (the gateway closed the connection) or the fake stops.
            while write_chunk(&mut conn.stream, piece.as_bytes()) {
                if conn.wait_or_gone(Duration::from_millis(200)) {
                    break;
                }
            }
            false
        }
        Kind::Error { status, body } => send_full(
            &mut conn.stream,
            *status,
            "application/json",
            &extra,
            body.to_string().as_bytes(),
        ),
        Kind::Raw {
            status,
            content_type,
            body,
        } => send_full(&mut conn.stream, *status, content_type, &extra, body),
        Kind::InvalidJson if !req.stream() => send_full(
            &mut conn.stream,
            200,
            "application/json",
            &extra,
            b"{\"choices\": [ {\"message\": ",
        ),
        Kind::InvalidJson => stream_events(
            conn,
            reply,
            &extra,
            vec!["{\"choices\": [".into(), "[DONE]".into()],
        ),
        kind => {
            let resolved = reply::resolve(kind, &req.body);
            if req.stream() {
                let usage = req.body["stream_options"]["include_usage"] == json!(true);
                let events = reply.stream_events(&resolved, &model, usage);
                stream_events(conn, reply, &extra, events)
            } else {
                let body = reply.completion_body(&resolved, &model).to_string();
                match reply.fault {
                    Fault::None => send_full(
                        &mut conn.stream,
                        200,
                        "application/json",
                        &extra,
                        body.as_bytes(),
                    ),
                    Fault::HangAfter(_) | Fault::CloseAfter(_) | Fault::ErrorAfter(..) => {
                        // Declare the whole body, send half: a truncated answer.
                        let head = head(200, "application/json", &extra, Some(body.len()));
                        let half = &body.as_bytes()[..body.len() / 2];
                        if conn
                            .stream
                            .write_all(head.as_bytes())
                            .and_then(|_| conn.stream.write_all(half))
                            .is_err()
                        {
                            return false;
                        }
                        if matches!(reply.fault, Fault::HangAfter(_)) {
                            conn.wait_or_gone(Duration::from_secs(3600));
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
    conn: &mut Conn,
    reply: &Reply,
    extra: &[(&str, &str)],
    events: Vec<String>,
) -> bool {
    if reply.one_write {
        let mut out = head(200, "text/event-stream", extra, None).into_bytes();
        for ev in &events {
            let data = format!("data: {ev}\n\n");
            out.extend_from_slice(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes());
        }
        out.extend_from_slice(b"0\r\n\r\n");
        return conn.stream.write_all(&out).is_ok();
    }
    if conn
        .stream
        .write_all(head(200, "text/event-stream", extra, None).as_bytes())
        .is_err()
    {
        return false;
    }
    for (i, ev) in events.iter().enumerate() {
        match &reply.fault {
            Fault::CloseAfter(n) if i == *n => {
                let _ = conn.stream.shutdown(std::net::Shutdown::Both);
                return false;
            }
            Fault::HangAfter(n) if i == *n => {
                conn.wait_or_gone(Duration::from_secs(3600));
                return false;
            }
            Fault::ErrorAfter(n, err) if i == *n => {
                let ok = write_chunk(&mut conn.stream, format!("data: {err}\n\n").as_bytes());
                return ok && write_chunk(&mut conn.stream, b"");
            }
            _ => {}
        }
        if i > 0 && conn.wait_or_gone(reply.chunk_delay) {
            return false;
        }
        if !write_chunk(&mut conn.stream, format!("data: {ev}\n\n").as_bytes()) {
            return false;
        }
    }
    write_chunk(&mut conn.stream, b"")
}
