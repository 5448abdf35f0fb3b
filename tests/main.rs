//! One integration-test binary; each module owns one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod backend_anthropic;
mod backend_openai;
mod config;
mod gateway;
mod gateway_upstream;
mod http_server;
mod mcp_stdio;
mod resilience;
mod sdk;
mod support;
