//! Shared test support: fake peers and helpers.
#![allow(dead_code)]
pub mod gateway;
pub mod peers;
