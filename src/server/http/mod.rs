//! STUB API — replaced by the HTTP/1.1 server implementation. The public surface below is the
//! contract the rest of the crate codes against.
#![allow(dead_code, clippy::panic, unused_variables)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A fully read request (head + body, body bounded by `max_body_bytes`).
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path without the query string, percent-decoding NOT applied.
    pub path: String,
    /// The raw query string without `?` ("" when none).
    pub query: String,
    pub version: Version,
    /// Header names as sent; look up with [`Request::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
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

/// Handed to the handler to answer one request: either one full response or a stream.
pub struct Responder<'a> {
    _p: std::marker::PhantomData<&'a ()>,
}

impl Responder<'_> {
    /// A complete response with `Content-Length`. Extra headers must not include
    /// Content-Length / Transfer-Encoding / Connection (the server sets those).
    pub fn send(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> io::Result<()> {
        unimplemented!()
    }

    /// Start a streamed response: HTTP/1.1 → chunked; HTTP/1.0 → raw bytes then close.
    pub fn stream(&mut self, status: u16, headers: &[(&str, &str)]) -> io::Result<BodyStream<'_>> {
        unimplemented!()
    }

    /// True when the peer has closed its side (non-blocking check; no data consumed).
    pub fn client_gone(&self) -> bool {
        unimplemented!()
    }
}

pub struct BodyStream<'a> {
    _p: std::marker::PhantomData<&'a ()>,
}

impl BodyStream<'_> {
    /// Write one chunk and flush it to the socket. An error means the client is gone.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        unimplemented!()
    }
    /// Non-blocking check that the peer closed.
    pub fn client_gone(&self) -> bool {
        unimplemented!()
    }
    /// Terminate the body (`0\r\n\r\n` for chunked) and flush.
    pub fn finish(self) -> io::Result<()> {
        unimplemented!()
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request, resp: &mut Responder<'_>);
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub workers: usize,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Whole head must arrive within this after the first byte.
    pub head_timeout: Duration,
    /// Per read/write on a socket while a request is being served.
    pub io_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 64,
            max_in_flight: 256,
            max_connections: 1024,
            max_body_bytes: 4 * 1024 * 1024,
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            head_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

pub struct Server {
    local_addr: SocketAddr,
}

impl Server {
    /// Start serving on an already bound listener. Returns at once; threads run in background.
    pub fn start(
        listener: std::net::TcpListener,
        limits: Limits,
        handler: std::sync::Arc<dyn Handler>,
    ) -> io::Result<Server> {
        unimplemented!()
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    /// Stop accepting, let in-flight requests finish up to `drain`, close the rest.
    /// Returns true when everything finished in time.
    pub fn shutdown(&self, drain: Duration) -> bool {
        unimplemented!()
    }
    /// Block until the server has shut down.
    pub fn join(self) {}
}
