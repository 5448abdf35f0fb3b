//! The closed-loop load generator: `concurrency` threads, each with its own keep-alive
//! connection, send the same request back to back for a warm-up and a measured window.
//! Requests started inside the window are recorded (latency, time to first content, status).
//!
//! Thread model: one OS thread per simulated client (small stacks), joined before `run`
//! returns; every socket read and write has a timeout, and a thread stops starting requests
//! at the end of the window, so a run always ends.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::client::{Conn, Outcome};

#[derive(Clone)]
pub struct Load {
    pub addr: SocketAddr,
    /// The complete request bytes.
    pub request: Arc<Vec<u8>>,
    pub stream: bool,
    /// Content events a complete stream must deliver.
    pub expect_chunks: usize,
    pub concurrency: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// One recorded request.
#[derive(Clone, Copy)]
struct Sample {
    status: u16,
    total_us: u32,
    first_us: u32,
    /// A 200 stream that delivered every chunk and `[DONE]`, or a 200 JSON answer.
    complete: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub window: Duration,
    /// 200 responses that were complete.
    pub ok: usize,
    /// 200 responses that were not (missing chunks, no `[DONE]`, an error event).
    pub incomplete: usize,
    pub status_503: usize,
    pub other_status: usize,
    /// Connect / read / write failures and timeouts.
    pub io_errors: usize,
    /// Latencies of complete 200s, sorted, in microseconds.
    pub latency_us: Vec<u32>,
    /// Time to first content of complete 200 streams, sorted, µs.
    pub first_us: Vec<u32>,
    /// Latencies of 503 answers, sorted, µs.
    pub latency_503_us: Vec<u32>,
    /// CPU time (user + system, ms) the measured server's processes spent over the measured
    /// window, when a probe was given ([`run_measured`]).
    pub cpu_ms: Option<f64>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    /// Requests recorded in the window that did not end as a complete 200: 503 (shed),
    /// incomplete, other status, I/O error.
    pub fn failed(&self) -> usize {
        self.incomplete + self.status_503 + self.other_status + self.io_errors
    }

    /// Every request recorded in the window, complete or not.
    pub fn total(&self) -> usize {
        self.ok + self.failed()
    }

    /// Server CPU per recorded request (ms), when measured.
    pub fn cpu_per_request_ms(&self) -> f64 {
        match self.cpu_ms {
            Some(cpu) if self.total() > 0 => cpu / self.total() as f64,
            _ => f64::NAN,
        }
    }
}

/// The `q`-quantile (0..=1) of sorted samples, in milliseconds; NaN when empty.
pub fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// The `q`-quantile (ms) over every recorded request, failures counted as the worst case:
/// `sorted_ok` are the complete requests' figures and `failed` more requests rank above
/// them all. Infinite when the quantile falls among the failures; NaN when nothing ran.
pub fn quantile_worst_ms(sorted_ok: &[u32], failed: usize, q: f64) -> f64 {
    let n = sorted_ok.len() + failed;
    if n == 0 {
        return f64::NAN;
    }
    let i = ((n - 1) as f64 * q).round() as usize;
    match sorted_ok.get(i) {
        Some(v) => f64::from(*v) / 1000.0,
        None => f64::INFINITY,
    }
}

pub fn run(load: &Load) -> Stats {
    run_measured(load, None)
}

/// [`run`], reading `cpu_ms` (the server's cumulative CPU time) at the start and the end of
/// the measured window, from the driver thread.
pub fn run_measured(load: &Load, cpu_ms: Option<&dyn Fn() -> f64>) -> Stats {
    let start_gate = Arc::new(Barrier::new(load.concurrency + 1));
    let mut handles = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let load = load.clone();
        let gate = Arc::clone(&start_gate);
        let h = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || client_loop(&load, &gate));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("cannot spawn load thread: {e}");
                break;
            }
        }
    }
    // Threads that failed to spawn never reach the barrier: stand in for them.
    for _ in handles.len()..load.concurrency {
        let gate = Arc::clone(&start_gate);
        std::thread::spawn(move || gate.wait());
    }
    start_gate.wait();
    let begin = Instant::now();
    let cpu = cpu_ms.map(|read| {
        sleep_until(begin + load.warmup);
        let a = read();
        sleep_until(begin + load.warmup + load.measure);
        read() - a
    });
    let mut all = Vec::new();
    for h in handles {
        if let Ok(samples) = h.join() {
            all.extend(samples);
        }
    }
    let mut stats = Stats {
        window: load.measure,
        cpu_ms: cpu,
        ..Stats::default()
    };
    for s in &all {
        match (s.status, s.complete) {
            (200, true) => {
                stats.ok += 1;
                stats.latency_us.push(s.total_us);
                if load.stream {
                    stats.first_us.push(s.first_us);
                }
            }
            (200, false) => stats.incomplete += 1,
            (503, _) => {
                stats.status_503 += 1;
                stats.latency_503_us.push(s.total_us);
            }
            (0, _) => stats.io_errors += 1,
            _ => stats.other_status += 1,
        }
    }
    stats.latency_us.sort_unstable();
    stats.first_us.sort_unstable();
    stats.latency_503_us.sort_unstable();
    stats
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn client_loop(load: &Load, gate: &Barrier) -> Vec<Sample> {
    const TIMEOUT: Duration = Duration::from_secs(30);
    let mut samples = Vec::with_capacity(4096);
    gate.wait();
    let begin = Instant::now();
    let (measure_from, end) = (begin + load.warmup, begin + load.warmup + load.measure);
    let mut conn: Option<Conn> = None;
    loop {
        let started = Instant::now();
        if started >= end {
            return samples;
        }
        let record = started >= measure_from;
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::open(load.addr, TIMEOUT) {
                Ok(c) => c,
                Err(_) => {
                    if record {
                        samples.push(Sample {
                            status: 0,
                            total_us: micros(started.elapsed()),
                            first_us: 0,
                            complete: false,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            },
        };
        let mut c = c;
        match c.exchange(&load.request, load.stream) {
            Ok(out) => {
                let complete = complete(load, &out);
                if record {
                    samples.push(Sample {
                        status: out.status,
                        // Measured from before the connect, so reconnects count.
                        total_us: micros(started.elapsed()),
                        first_us: out.first_content.map_or(0, micros),
                        complete,
                    });
                }
                if !out.close {
                    conn = Some(c);
                }
            }
            Err(_) => {
                if record {
                    samples.push(Sample {
                        status: 0,
                        total_us: micros(started.elapsed()),
                        first_us: 0,
                        complete: false,
                    });
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn complete(load: &Load, out: &Outcome) -> bool {
    if out.status != 200 {
        return false;
    }
    if load.stream {
        out.done && !out.error_event && out.content_events == load.expect_chunks
    } else {
        // A whole completion ends with its finish reason and usage; a whole Responses API
        // response says it completed.
        out.body.ends_with(b"}")
            && (find(&out.body, b"\"finish_reason\":\"stop\"")
                || (find(&out.body, b"\"object\":\"response\"")
                    && find(&out.body, b"\"status\":\"completed\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_rank_as_the_worst_case() {
        let ok: Vec<u32> = (1..=99).map(|i| i * 1000).collect();
        assert_eq!(quantile_worst_ms(&ok, 0, 0.5), 50.0);
        // 99 complete + 1 failed: the median moves up one rank, the maximum is the failure.
        assert_eq!(quantile_worst_ms(&ok, 1, 0.5), 51.0);
        assert!(quantile_worst_ms(&ok, 1, 1.0).is_infinite());
        // Half failed: the median is a failure.
        assert!(quantile_worst_ms(&ok[..10], 10, 0.5).is_infinite());
        assert!(quantile_worst_ms(&[], 0, 0.5).is_nan());
        let s = Stats {
            ok: 8,
            status_503: 1,
            io_errors: 1,
            cpu_ms: Some(5.0),
            ..Stats::default()
        };
        assert_eq!((s.failed(), s.total()), (2, 10));
        assert_eq!(s.cpu_per_request_ms(), 0.5);
    }
}
