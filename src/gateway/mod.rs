//! The API layer above the HTTP server: [`routes`] maps each request to its endpoint behind
//! auth and the admin guard; [`chat`] answers chat completions and [`responses`] the Responses
//! API, both running the tool loop ([`run`] holds what they share); [`sse`] writes
//! chat-completion chunks as server-sent events; [`reply`] writes JSON answers and errors;
//! `keys` admits model requests against their API key's limits.

pub mod chat;
mod keys;
pub mod reply;
pub mod responses;
pub mod routes;
pub mod run;
pub mod sse;
