//! Operations tests: the real binary as an operator runs it — signals and drain, listen
//! failures, `/metrics`, `check --connect`, two replicas behind a real nginx, and the aarch64
//! static build under qemu-user. `proc` holds the helpers that run and watch processes.

mod check;
mod deploy;
mod lifecycle;
mod metrics;
mod nginx;
mod proc;
mod qemu;
