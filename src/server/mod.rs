//! The gateway's HTTP side: `http/` is our HTTP/1.1 server (limits, keep-alive, chunked
//! streaming, a bounded worker pool); `routes` maps requests to the API; `sse` writes
//! chat-completion chunks as server-sent events.

pub mod http;
pub mod routes;
pub mod sse;
