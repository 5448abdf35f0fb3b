//! One integration-test binary; each module owns one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
mod http_server;
