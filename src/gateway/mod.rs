//! The API layer above the HTTP server: [`routes`] maps each request to its endpoint behind
//! auth and the admin guard; [`chat`] answers chat completions, [`completions`] the legacy
//! completions API and [`responses`] the Responses API, all running the tool loop ([`run`]
//! holds what they share; [`decode`] admits their bodies within the memory limits); [`sse`]
//! writes chat-completion chunks as server-sent events; [`reply`] writes JSON answers and errors;
//! `keys` admits model requests against their API key's limits.

pub mod chat;
pub mod completions;
pub mod decode;
mod keys;
pub mod reply;
pub mod responses;
pub mod routes;
pub mod run;
pub mod sse;
