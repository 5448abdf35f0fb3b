//! One integration-test binary; each module owns one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    unsafe_code,
    reason = "tests signal processes and read or set process limits through libc directly"
)]

mod admin;
mod anthropic_compat;
mod audit;
mod auth;
mod backend_anthropic;
mod backend_openai;
mod backend_openai_responses;
mod backend_upstream;
mod browser;
mod cli;
mod completions;
mod config;
mod control_plane;
mod docs;
mod gateway;
mod gateway_anthropic;
mod gateway_mcp;
mod gateway_upstream;
mod hostile_requests;
mod http_server;
mod keys;
mod loop_semantics;
mod mcp_conformance;
mod mcp_failures;
mod mcp_points;
mod mcp_remote;
mod mcp_stdio;
mod ops;
mod resilience;
mod responses;
mod sdk;
mod support;
mod telemetry;
mod watch;
