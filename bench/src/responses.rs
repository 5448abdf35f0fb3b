//! The Responses API scenario: the same requests through `POST /v1/responses` and `POST
//! /v1/chat/completions` of one aiproxy in front of the same fake upstream, next to the
//! upstream measured directly, so the cost of the Responses translation (input items →
//! messages, semantic events, the response object, the store) shows as the difference between
//! the two paths' added latency and time to first token. Target: within 10 % of chat
//! completions.
//!
//! The order of direct / chat / responses rotates between repeats, like the other runs. Thread
//! model: as [`crate::load`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::client;
use crate::figures::{delta, median};
use crate::load::{self, Load, Stats, quantile_ms};
use crate::scenarios::Shape;

/// One shape measured three ways, one entry per repeat.
pub struct Triple {
    pub shape: Shape,
    pub direct: Vec<Stats>,
    pub chat: Vec<Stats>,
    pub responses: Vec<Stats>,
}

pub fn shapes() -> Vec<Shape> {
    let s = |concurrency, stream, latency_ms, gap_ms| Shape {
        id: if stream { "stream" } else { "json" },
        concurrency,
        stream,
        chunks: if stream { 16 } else { 8 },
        latency_ms,
        gap_ms,
    };
    vec![
        s(1, false, 0, 0),
        s(16, false, 5, 0),
        s(1, true, 0, 0),
        s(16, true, 5, 1),
    ]
}

fn text(shape: &Shape) -> String {
    format!(
        "chunks={} latency={} gap={}",
        shape.chunks, shape.latency_ms, shape.gap_ms
    )
}

fn chat_request(shape: &Shape, model: &str) -> Vec<u8> {
    let mut b = json!({"model": model, "messages": [{"role": "user", "content": text(shape)}],
                       "stream": shape.stream});
    if shape.stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    client::post("/v1/chat/completions", b.to_string().as_bytes())
}

/// The common client form: `input` as a string; `store` left at its default (true).
fn responses_request(shape: &Shape, model: &str) -> Vec<u8> {
    let b = json!({"model": model, "input": text(shape), "stream": shape.stream});
    client::post("/v1/responses", b.to_string().as_bytes())
}

fn load(
    addr: SocketAddr,
    request: Vec<u8>,
    shape: &Shape,
    warmup: Duration,
    measure: Duration,
) -> Load {
    Load {
        addr,
        request: Arc::new(request),
        stream: shape.stream,
        expect_chunks: shape.chunks,
        concurrency: shape.concurrency,
        warmup,
        measure,
    }
}

/// Measure every shape `repeats` times: direct upstream, chat completions, Responses.
pub fn run(
    upstream: SocketAddr,
    proxy: SocketAddr,
    warmup: Duration,
    measure: Duration,
    repeats: usize,
) -> Vec<Triple> {
    let mut triples: Vec<Triple> = shapes()
        .into_iter()
        .map(|shape| Triple {
            shape,
            direct: Vec::new(),
            chat: Vec::new(),
            responses: Vec::new(),
        })
        .collect();
    for rep in 0..repeats {
        for t in &mut triples {
            let s = &t.shape;
            let mut runs: [Option<Stats>; 3] = Default::default();
            for i in crate::scenarios::order(&[0, 1, 2], rep) {
                let (addr, request) = match i {
                    0 => (upstream, chat_request(s, "fake-model")),
                    1 => (proxy, chat_request(s, "bench")),
                    _ => (proxy, responses_request(s, "bench")),
                };
                runs[i] = Some(load::run(&load(addr, request, s, warmup, measure)));
            }
            let [direct, chat, resp] = runs.map(Option::unwrap_or_default);
            eprintln!(
                "  {:<7} c={:<3} direct p50 {:>7.3} ms | chat p50 {:>7.3} ms | responses p50 {:>7.3} ms (ttft {:.3} / {:.3}) failed {} / {}",
                s.id,
                s.concurrency,
                quantile_ms(&direct.latency_us, 0.5),
                quantile_ms(&chat.latency_us, 0.5),
                quantile_ms(&resp.latency_us, 0.5),
                quantile_ms(&chat.first_us, 0.5),
                quantile_ms(&resp.first_us, 0.5),
                failed(&chat),
                failed(&resp),
            );
            t.direct.push(direct);
            t.chat.push(chat);
            t.responses.push(resp);
        }
    }
    triples
}

fn failed(s: &Stats) -> usize {
    s.failed()
}

/// Median over repeats of (path − direct) for a per-run figure.
fn added(direct: &[Stats], path: &[Stats], f: impl Fn(&Stats) -> f64) -> f64 {
    median(direct.iter().zip(path).map(|(d, p)| f(p) - f(d)).collect())
}

fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.3}")
    }
}

/// The figures of one triple: (added p50 chat, added p50 responses, TTFT p50 chat, TTFT p50
/// responses, the same TTFTs added over direct); all ms, medians over repeats.
pub struct Figures {
    pub added_chat: f64,
    pub added_responses: f64,
    pub ttft_chat: f64,
    pub ttft_responses: f64,
    pub ttft_added_chat: f64,
    pub ttft_added_responses: f64,
}

pub fn figures(t: &Triple) -> Figures {
    let lat = |s: &Stats| quantile_ms(&s.latency_us, 0.5);
    let ttft = |s: &Stats| quantile_ms(&s.first_us, 0.5);
    let med = |v: &[Stats], f: &dyn Fn(&Stats) -> f64| median(v.iter().map(f).collect());
    Figures {
        added_chat: added(&t.direct, &t.chat, lat),
        added_responses: added(&t.direct, &t.responses, lat),
        ttft_chat: med(&t.chat, &ttft),
        ttft_responses: med(&t.responses, &ttft),
        ttft_added_chat: added(&t.direct, &t.chat, ttft),
        ttft_added_responses: added(&t.direct, &t.responses, ttft),
    }
}

/// The markdown section (also printed by `aiproxy-bench responses`).
pub fn section(o: &mut String, triples: &[Triple]) {
    let _ = writeln!(o, "## Responses API vs chat completions\n");
    let _ = writeln!(
        o,
        "The same request through `POST /v1/responses` (`input` as a string, `store` default \
         true) and `POST /v1/chat/completions` of one aiproxy in front of the same fake \
         upstream. Added = p50 of the path minus p50 of the upstream measured directly in the \
         same repeat (median over repeats); TTFT = time to the first text delta. Quantiles are \
         of complete requests, with the failed ones (503, incomplete, I/O) counted beside; \
         any failure makes the row not met. Target: the \
         Responses path's added latency and TTFT within 10 % of chat completions' (a difference \
         under 0.05 ms is within measurement noise on this machine and counts as met).\n"
    );
    let _ = writeln!(
        o,
        "| Shape | c | Upstream | Added p50 chat / responses (ms) | TTFT p50 chat / responses (ms) | Added TTFT chat / responses (ms) | Failed chat / responses | Within 10 % |\n|---|---|---|---|---|---|---|---|"
    );
    for t in triples {
        let f = figures(t);
        let within = |a: f64, b: f64| b <= a * 1.1 || b - a < 0.05;
        let sum = |v: &[Stats]| v.iter().map(failed).sum::<usize>();
        // A failed request (503, incomplete, I/O) anywhere in the three makes it not met.
        let ok = within(f.added_chat, f.added_responses)
            && (!t.shape.stream || within(f.ttft_added_chat, f.ttft_added_responses))
            && sum(&t.direct) + sum(&t.chat) + sum(&t.responses) == 0;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} / {} | {} | {} | {} / {} | {} |",
            t.shape.id,
            t.shape.concurrency,
            t.shape.upstream(),
            delta(f.added_chat),
            delta(f.added_responses),
            if t.shape.stream {
                format!("{} / {}", ms(f.ttft_chat), ms(f.ttft_responses))
            } else {
                "–".into()
            },
            if t.shape.stream {
                format!(
                    "{} / {}",
                    delta(f.ttft_added_chat),
                    delta(f.ttft_added_responses)
                )
            } else {
                "–".into()
            },
            sum(&t.chat),
            sum(&t.responses),
            if ok { "✅ met" } else { "❌ missed" },
        );
    }
    let _ = writeln!(o);
}
