//! One integration-test binary; each module owns one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod config;
mod gateway;
mod mcp_conformance;
mod mcp_remote;
mod mcp_stdio;
mod sdk;
mod support;
