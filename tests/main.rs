//! One integration-test binary; each module owns one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod http_server;
mod support;
