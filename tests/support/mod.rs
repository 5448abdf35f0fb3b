//! Shared test support: fake peers and helpers.
#![allow(dead_code)]

pub mod fake_anthropic;
