//! One integration-test binary; each module owns one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    unsafe_code,
    reason = "tests signal processes and read or set process limits through libc directly"
)]

mod admin;
mod auth;
mod backend_anthropic;
mod backend_openai;
mod backend_upstream;
mod cli;
mod config;
mod docs;
mod gateway;
mod gateway_anthropic;
mod gateway_mcp;
mod gateway_upstream;
mod hostile_requests;
mod http_server;
mod mcp_conformance;
mod mcp_remote;
mod mcp_stdio;
mod ops;
mod resilience;
mod responses;
mod sdk;
mod support;
