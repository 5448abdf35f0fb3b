//! Shared test support: fake peers and helpers.
#![allow(dead_code)]

pub mod config;
pub mod fake_anthropic;
pub mod fake_apiman;
pub mod fake_http;
pub mod fake_openai;
pub mod fake_responses;
pub mod gateway;
pub mod peers;
pub mod proc_gateway;
pub mod wait;
