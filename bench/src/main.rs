//! `aiproxy-bench`: the benchmark harness behind `make bench`.
//!
//! - `upstream --listen ADDR --workers N`: the fake OpenAI-compatible upstream ([`upstream`]);
//! - `run --aiproxy PATH [--static PATH] [--out FILE] [--work DIR] [--secs S] [--warmup S]
//!   [--repeats N] [--only streams] [--pin] [--no-nginx]`: the whole suite ([`scenarios`],
//!   with the nginx reference row [`nginx`] and the tool loop [`tools`], then the long-stream
//!   capacity run [`streams`]), written to `--out` ([`report`], verdicts in [`targets`]);
//!   `--only streams` runs just the capacity scenario and prints its section (RESULTS.md is
//!   left alone); `--pin` puts the load generator on CPU 1 and the servers on CPU 0;
//! - `responses --aiproxy PATH [--secs S] [--warmup S] [--repeats N] [--pin]`: only the Responses
//!   API vs chat completions scenario ([`responses`]), its table printed to stdout;
//! - `load --addr ADDR [--concurrency N] [--secs S] [--stream] [--model M] [--message TEXT]
//!   [--api chat|responses] [--no-store]`: one ad-hoc load run, printed (for profiling
//!   sessions); `--api responses` sends the same message as `POST /v1/responses` (`input` a
//!   string, `store` at its default unless `--no-store`).
//!
//! Thread model: the driver runs on the main thread; see each module for its threads.

mod client;
mod figures;
mod load;
mod mcp_probe;
mod nginx;
mod procs;
mod report;
mod responses;
mod scenarios;
mod streams;
mod targets;
mod tools;
mod upstream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("aiproxy-bench: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// `--flag value` pairs and bare `--switch`es after the subcommand.
fn flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument {a}"));
        };
        let value = match it.peek() {
            Some(v) if !v.starts_with("--") => it.next().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn secs(f: &HashMap<String, String>, name: &str, default: f64) -> Result<Duration, String> {
    match f.get(name) {
        None => Ok(Duration::from_secs_f64(default)),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| *s >= 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or(format!("--{name} takes seconds")),
    }
}

fn number(f: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, String> {
    f.get(name).map_or(Ok(default), |v| {
        v.parse().map_err(|_| format!("--{name} takes a number"))
    })
}

fn run(args: &[String]) -> Result<(), String> {
    let (cmd, rest) = args
        .split_first()
        .ok_or("usage: aiproxy-bench upstream|run|responses|load …")?;
    let f = flags(rest)?;
    match cmd.as_str() {
        "upstream" => {
            // Threads inherit the nice value of the thread that starts them: lowering this one
            // first lowers the whole server.
            let nice = number(&f, "nice", 0)?;
            if nice > 0 {
                let by = i32::try_from(nice).unwrap_or(19);
                aiproxy::sys::process::lower_thread_priority(by).map_err(|e| e.to_string())?;
            }
            upstream::run(
                f.get("listen").map_or("127.0.0.1:0", String::as_str),
                number(&f, "workers", 640)?.max(1),
            )
            .map_err(|e| e.to_string())
        }
        "run" | "responses" => {
            let aiproxy = PathBuf::from(f.get("aiproxy").ok_or("--aiproxy PATH is required")?);
            let opts = scenarios::Opts {
                aiproxy: std::fs::canonicalize(&aiproxy)
                    .map_err(|e| format!("{}: {e}", aiproxy.display()))?,
                static_bin: f.get("static").filter(|s| !s.is_empty()).map(PathBuf::from),
                self_exe: std::env::current_exe().map_err(|e| e.to_string())?,
                work: PathBuf::from(f.get("work").map_or("target/bench", String::as_str)),
                out: PathBuf::from(f.get("out").map_or("bench/RESULTS.md", String::as_str)),
                measure: secs(&f, "secs", 3.0)?,
                warmup: secs(&f, "warmup", 0.5)?,
                repeats: number(&f, "repeats", 3)?.max(1),
                nginx: !f.contains_key("no-nginx"),
            };
            let placement = if f.contains_key("pin") {
                match procs::pin() {
                    Ok(()) => "pinned: load generator on CPU 1, servers (upstream, aiproxy, nginx) on CPU 0".to_string(),
                    Err(why) => format!("unpinned (pinning asked for but unavailable: {why})"),
                }
            } else {
                "unpinned (BENCH_PIN=1 pins the load generator to CPU 1, the servers to CPU 0)"
                    .to_string()
            };
            eprintln!("cpu placement: {placement}");
            if cmd == "responses" {
                let triples = scenarios::responses_only(&opts).map_err(|e| e.to_string())?;
                let mut text = String::new();
                responses::section(&mut text, &triples);
                println!("{text}");
                return Ok(());
            }
            let mut machine = report::Machine::probe();
            machine.placement = placement;
            match f.get("only").map(String::as_str) {
                None => {}
                Some("streams") => {
                    eprintln!("long-stream capacity ({} streams)", streams::STREAMS);
                    let r = streams::run(&opts).map_err(|e| e.to_string())?;
                    println!(
                        "{}Machine before: {}; after: {}; {}",
                        streams::section(&r),
                        machine.load_before,
                        procs::busy(),
                        machine.placement
                    );
                    return Ok(());
                }
                Some(other) => return Err(format!("--only {other}: known: streams")),
            }
            let mut results = scenarios::run(&opts).map_err(|e| e.to_string())?;
            let before = procs::busy();
            eprintln!(
                "long-stream capacity ({} streams; {before})",
                streams::STREAMS
            );
            let capacity = streams::run(&opts).map_err(|e| e.to_string())?;
            machine.load_after = procs::busy();
            results.busy.push(scenarios::Busy {
                section: "long-stream capacity",
                before,
                after: machine.load_after.clone(),
            });
            let mut text = report::write(&results, &machine, &opts);
            text.push('\n');
            text.push_str(&streams::section(&capacity));
            std::fs::write(&opts.out, &text).map_err(|e| e.to_string())?;
            eprintln!("wrote {}", opts.out.display());
            Ok(())
        }
        "load" => {
            let addr = f
                .get("addr")
                .and_then(|a| a.parse().ok())
                .ok_or("--addr HOST:PORT is required")?;
            let stream = f.contains_key("stream");
            let message = f.get("message").map_or("chunks=8", String::as_str);
            let chunks = message
                .split_whitespace()
                .find_map(|w| w.strip_prefix("chunks="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(8);
            let model = f.get("model").map_or("bench", String::as_str);
            let (path, body) = match f.get("api").map_or("chat", String::as_str) {
                "chat" => {
                    let mut body = serde_json::json!({
                        "model": model,
                        "messages": [{"role": "user", "content": message}],
                        "stream": stream,
                    });
                    if stream {
                        body["stream_options"] = serde_json::json!({"include_usage": true});
                    }
                    ("/v1/chat/completions", body)
                }
                "responses" => {
                    let mut body =
                        serde_json::json!({"model": model, "input": message, "stream": stream});
                    if f.contains_key("no-store") {
                        body["store"] = serde_json::json!(false);
                    }
                    ("/v1/responses", body)
                }
                other => return Err(format!("--api {other}: expected chat or responses")),
            };
            let l = load::Load {
                addr,
                request: Arc::new(client::post(path, body.to_string().as_bytes())),
                stream,
                expect_chunks: chunks,
                concurrency: number(&f, "concurrency", 1)?.max(1),
                warmup: secs(&f, "warmup", 0.5)?,
                measure: secs(&f, "secs", 3.0)?,
            };
            let s = load::run(&l);
            println!(
                "ok {} ({:.0} rps) p50 {:.3} ms p90 {:.3} ms p99 {:.3} ms max {:.3} ms | ttfb p50 {:.3} p99 {:.3} | incomplete {} 503 {} (p99 {:.3} ms) other {} io {}",
                s.ok,
                s.rps(),
                load::quantile_ms(&s.latency_us, 0.5),
                load::quantile_ms(&s.latency_us, 0.9),
                load::quantile_ms(&s.latency_us, 0.99),
                load::quantile_ms(&s.latency_us, 1.0),
                load::quantile_ms(&s.first_us, 0.5),
                load::quantile_ms(&s.first_us, 0.99),
                s.incomplete,
                s.status_503,
                load::quantile_ms(&s.latency_503_us, 0.99),
                s.other_status,
                s.io_errors
            );
            Ok(())
        }
        other => Err(format!("unknown command {other}")),
    }
}
