//! Every libc call and every other `unsafe` of the crate, behind safe functions: the rest of
//! the crate denies `unsafe_code`, and each `unsafe` block here says why it is sound (clippy's
//! `undocumented_unsafe_blocks`). Linux only.
//!
//! - [`net`]: epoll and an eventfd waker for the HTTP poller, peer hang-up checks, small
//!   non-blocking writes;
//! - [`process`]: pipes and process groups of stdio MCP servers;
//! - [`scoped`]: a callback lent to code deeper in the same thread's call stack;
//! - [`signals`]: SIGTERM / SIGINT / SIGHUP, blocked in every thread and awaited by the main one.
//!
//! A leaf: imports nothing from the crate.

pub mod net;
pub mod process;
pub mod scoped;
pub mod signals;
