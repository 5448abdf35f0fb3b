//! `bench/RESULTS.md`: the machine (and how busy it was around each section), the targets
//! with their verdicts ([`crate::targets`]), and the tables (absolute values, proxy/direct
//! ratios, the nginx reference), plus how to reproduce. Figures across repeats are medians.
//!
//! Thread model: pure formatting on the driver thread.

use std::fmt::Write;

use crate::figures::{
    added, cpu, delta, failed, lat, lat_ok, median, ms, q, sum, tool_figures, ttfb,
};
use crate::load::{Stats, quantile_ms};
use crate::scenarios::{Opts, Pair, Results};
use crate::tools::ORIGINAL_TOOL_ROUND_RPS;

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub kernel: String,
    pub rustc: String,
    /// [`crate::procs::busy`] before and after the whole run.
    pub load_before: String,
    pub load_after: String,
    pub date: String,
    /// Pinned or not, and how.
    pub placement: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let cmd = |c: &str, args: &[&str]| {
            std::process::Command::new(c)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Machine {
            cpu,
            cores,
            mem_gib: mem_kb / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            rustc: cmd("rustc", &["-V"]),
            load_before: crate::procs::busy(),
            load_after: String::new(),
            date: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            placement: String::new(),
        }
    }
}

pub fn write(r: &Results, m: &Machine, opts: &Opts) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# aiproxy benchmark results\n");
    let _ = writeln!(
        o,
        "Written by `make bench` (`bench/run.sh`) on {}. Every latency and throughput figure is \
         aiproxy in front of the in-tree fake upstream, measured against that same upstream \
         directly (and against nginx in front of it) in the same run; the order of the sides \
         rotates between repeats, which run {} times ({} s measured after {} s of warm-up \
         each); figures are medians over the repeats.\n",
        m.date,
        opts.repeats,
        opts.measure.as_secs_f64(),
        opts.warmup.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "Profiles, the fixes they led to (with before/after figures) and the plan for the \
         targets still missed are in [NOTES.md](NOTES.md).\n"
    );
    machine(&mut o, m, r, opts);
    crate::targets::against_nginx(&mut o, r);
    crate::targets::standing(&mut o, r);
    latency_table(&mut o, r);
    stream_table(&mut o, r);
    crate::responses::section(&mut o, &r.responses);
    scaling_table(&mut o, r);
    tools_section(&mut o, r);
    footprint_section(&mut o, r);
    reproduce(&mut o);
    o
}

fn machine(o: &mut String, m: &Machine, r: &Results, opts: &Opts) {
    let _ = writeln!(o, "## Machine\n");
    let _ = writeln!(o, "- aiproxy measured: {}", measured_binary(opts));
    let _ = writeln!(
        o,
        "- CPU: {} × {} (shared: other builds may run on the same cores)",
        m.cores, m.cpu
    );
    let _ = writeln!(o, "- Memory: {:.1} GiB; kernel {}", m.mem_gib, m.kernel);
    let _ = writeln!(o, "- Toolchain: {}", m.rustc);
    let _ = writeln!(o, "- CPU placement: {}", m.placement);
    let _ = writeln!(
        o,
        "- Everything runs on this one machine over loopback: the load generator, aiproxy, \
         nginx and the fake upstream share the cores, so absolute figures are pessimistic and \
         the ratios to the direct run and to nginx are the meaningful ones.\n"
    );
    let _ = writeln!(
        o,
        "How busy the machine was (load average 1/5/15 min; threads in state R that are not \
         the harness's driver, sampled between loads):\n"
    );
    let _ = writeln!(o, "| Section | Before | After |\n|---|---|---|");
    let _ = writeln!(o, "| whole run | {} | {} |", m.load_before, m.load_after);
    for b in &r.busy {
        let _ = writeln!(o, "| {} | {} | {} |", b.section, b.before, b.after);
    }
    let _ = writeln!(o);
}

fn latency_table(o: &mut String, r: &Results) {
    let _ = writeln!(o, "## Non-streaming latency and throughput\n");
    let _ = writeln!(
        o,
        "Request: one user message, answer of 8 short deltas as one JSON completion. \
         Latency is measured at the client from sending the request to the end of the body. \
         Quantiles count failed requests as the slowest (∞ when a quantile falls among them); \
         Δ = proxy quantile − direct quantile of the same repeat (difference of two quantiles, \
         not a quantile of paired differences); CPU/req = the proxy's user + system time over \
         the window per request; Failed = direct / proxy requests that were not a complete \
         200 (503, incomplete, I/O error, other status), over all repeats.\n"
    );
    let _ = writeln!(
        o,
        "| Scenario | c | Upstream | Direct p50 / p99 (ms) | Proxy p50 / p99 (ms) | Δp50 / Δp99 (ms) | Direct rps | Proxy rps | Proxy/direct | Proxy CPU/req (ms) | Failed |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in r.pairs.iter().filter(|p| !p.shape.stream) {
        row(o, p);
    }
    let _ = writeln!(
        o,
        "\n`json-cpu` rows use a 0 ms upstream: throughput is then bounded by the 2 shared cores, \
         which the load generator, the upstream and the proxy split (a proxied request costs a \
         second HTTP exchange and JSON decode/encode on the same cores), so that ratio shows CPU \
         cost per request rather than what a client behind a real upstream sees.\n"
    );
}

fn row(o: &mut String, p: &Pair) {
    let d_rps = q(&p.direct, Stats::rps);
    let p_rps = q(&p.proxy, Stats::rps);
    let _ = writeln!(
        o,
        "| {} | {} | {} | {} / {} | {} / {} | {} / {} | {:.0} | {:.0} | {:.2} | {} | {} / {} |",
        p.shape.id,
        p.shape.concurrency,
        p.shape.upstream(),
        ms(q(&p.direct, |s| lat(s, 0.5))),
        ms(q(&p.direct, |s| lat(s, 0.99))),
        ms(q(&p.proxy, |s| lat(s, 0.5))),
        ms(q(&p.proxy, |s| lat(s, 0.99))),
        delta(added(p, |s| lat(s, 0.5))),
        delta(added(p, |s| lat(s, 0.99))),
        d_rps,
        p_rps,
        p_rps / d_rps,
        ms(cpu(&p.proxy)),
        failed(&p.direct),
        failed(&p.proxy)
    );
}

fn stream_table(o: &mut String, r: &Results) {
    let _ = writeln!(o, "## Streaming\n");
    let _ = writeln!(
        o,
        "TTFB = time to the first SSE event carrying content (what a chat UI shows first); \
         full = time to the end of the stream. A stream counts as complete when every content \
         delta and `[DONE]` arrived and there was no error event; every other outcome (503, \
         incomplete, I/O error) is counted in Complete's total and ranks as the slowest in the \
         quantiles. Δ = difference of the two runs' quantiles.\n"
    );
    let _ = writeln!(
        o,
        "| c | Upstream | Direct TTFB p50 / p99 | Proxy TTFB p50 / p99 | Δ TTFB p50 / Δp99 | Direct full p50 | Proxy full p50 | Proxy streams/s (ratio) | Complete (proxy) | Failed direct |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in r.pairs.iter().filter(|p| p.shape.stream) {
        let ok = sum(&p.proxy, |s| s.ok);
        let _ = writeln!(
            o,
            "| {} | {} | {} / {} | {} / {} | {} / {} | {} | {} | {:.0} ({:.2}) | {ok} / {} | {} |",
            p.shape.concurrency,
            p.shape.upstream(),
            ms(q(&p.direct, |s| ttfb(s, 0.5))),
            ms(q(&p.direct, |s| ttfb(s, 0.99))),
            ms(q(&p.proxy, |s| ttfb(s, 0.5))),
            ms(q(&p.proxy, |s| ttfb(s, 0.99))),
            delta(added(p, |s| ttfb(s, 0.5))),
            delta(added(p, |s| ttfb(s, 0.99))),
            ms(q(&p.direct, |s| lat(s, 0.5))),
            ms(q(&p.proxy, |s| lat(s, 0.5))),
            q(&p.proxy, Stats::rps),
            q(&p.proxy, Stats::rps) / q(&p.direct, Stats::rps),
            sum(&p.proxy, Stats::total),
            failed(&p.direct)
        );
    }
    let _ = writeln!(o);
}

fn scaling_table(o: &mut String, r: &Results) {
    let _ = writeln!(o, "## Scaling curve\n");
    let _ = writeln!(
        o,
        "Non-stream requests on a 20 ms upstream, the bench config's server settings (64 workers, \
         `max_in_flight` 256; the defaults are 1,024 and 2,048). Each worker runs one request at a time, so the pool saturates \
         at 64 concurrent requests (≈ 64 / 20 ms = 3 200 rps); up to 256 more wait in the queue \
         (latency grows, nothing fails); beyond 256 in flight the proxy answers 503 with \
         `Retry-After: 1` at once. The fake upstream runs 640 workers, so the direct side keeps \
         scaling past 64 and the proxy/direct ratio there shows the pool limit, not a slowdown \
         (raise `server.workers` to admit more concurrent upstream calls). The load generator \
         retries a 503 at once (it ignores `Retry-After`), which makes the 503 count large; at \
         c=512 the tails of both sides are the 512 client threads' own scheduling on 2 cores. \
         Here the quantiles are of the 200s only, with the 503s and I/O errors counted beside; \
         Δ = difference of the two runs' quantiles. nginx is not run on this curve.\n"
    );
    let _ = writeln!(
        o,
        "| c | Direct rps | Direct p50 / p99 (ms) | Proxy rps | Proxy p50 / p99 (ms) | Δp50 / Δp99 (ms) | Proxy/direct rps | Proxy 503s (p99 ms) | Other failures |\n|---|---|---|---|---|---|---|---|---|"
    );
    for p in &r.scaling {
        let d_rps = q(&p.direct, Stats::rps);
        let p_rps = q(&p.proxy, Stats::rps);
        let n503 = sum(&p.proxy, |s| s.status_503);
        let p99_503 = median(
            p.proxy
                .iter()
                .map(|s| quantile_ms(&s.latency_503_us, 0.99))
                .collect(),
        );
        let _ = writeln!(
            o,
            "| {} | {:.0} | {} / {} | {:.0} | {} / {} | {} / {} | {:.2} | {} ({}) | {} |",
            p.shape.concurrency,
            d_rps,
            ms(q(&p.direct, |s| lat_ok(s, 0.5))),
            ms(q(&p.direct, |s| lat_ok(s, 0.99))),
            p_rps,
            ms(q(&p.proxy, |s| lat_ok(s, 0.5))),
            ms(q(&p.proxy, |s| lat_ok(s, 0.99))),
            delta(added(p, |s| lat_ok(s, 0.5))),
            delta(added(p, |s| lat_ok(s, 0.99))),
            p_rps / d_rps,
            n503,
            ms(p99_503),
            sum(&p.proxy, |s| s.io_errors + s.incomplete + s.other_status)
        );
    }
    let _ = writeln!(o);
}

fn tools_section(o: &mut String, r: &Results) {
    let t = tool_figures(r);
    let k = r.tools.iterations;
    let _ = writeln!(o, "## Tool loop\n");
    let _ = writeln!(
        o,
        "Assistant with the built-in demo MCP server over stdio; the fake upstream calls `echo` \
         {k} times, then answers (c=1, non-stream, 0 ms upstream). Per iteration = (p50 with {k} \
         tool rounds − p50 with none) / {k}. The upstream share is a direct round trip to the \
         fake; the tool share is `tools/call echo` timed directly over the demo server's stdio; \
         all three are measured next to each other in each of {} repeats, and the overhead is \
         computed per repeat. Each iteration crosses several threads (the worker, which runs a \
         round of one call itself, aiproxy's MCP reader thread, and the demo server's reader \
         and call threads), so this is the figure most sensitive to other load on the cores. The request writes to the \
         demo server's stdio are one `write` each in the probe, as the gateway makes them. The \
         order of the runs rotates between repeats.\n",
        r.tools.base.len()
    );
    let _ = writeln!(
        o,
        "| Request p50, no tool round | Request p50, {k} rounds | Per iteration | Upstream round (direct) | Tool call (direct stdio) | **Proxy overhead per iteration** | Spread over repeats | Failed |\n|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        o,
        "| {} ms | {} ms | {} ms | {} ms | {} ms | **{} ms** | {}–{} ms | {} |\n",
        ms(q(&r.tools.base, |s| lat(s, 0.5))),
        ms(q(&r.tools.looped, |s| lat(s, 0.5))),
        ms(t.per_iteration),
        ms(t.upstream),
        ms(t.tool),
        ms(t.overhead),
        ms(t.overhead_min),
        ms(t.overhead_max),
        t.failed
    );
    let _ = writeln!(
        o,
        "Tool-round throughput: one tool round per request (2 upstream calls + 1 MCP call), \
         c=16, 0 ms upstream, against the original Python project's recorded figures (see the \
         issue 16 targets above).\n"
    );
    let _ = writeln!(
        o,
        "| Shape | Requests/s (median) | p50 / p99 (ms) | Original (recorded) | Multiple | Failed |\n|---|---|---|---|---|---|"
    );
    let rows = [
        ("non-stream", &r.tools.round_c16, ORIGINAL_TOOL_ROUND_RPS.0),
        (
            "stream",
            &r.tools.round_c16_stream,
            ORIGINAL_TOOL_ROUND_RPS.1,
        ),
    ];
    for (kind, runs, original) in rows {
        let rps = q(runs, Stats::rps);
        let _ = writeln!(
            o,
            "| {kind} | {rps:.0} | {} / {} | {original:.0} | {:.1}× | {} |",
            ms(q(runs, |s| lat(s, 0.5))),
            ms(q(runs, |s| lat(s, 0.99))),
            rps / original,
            failed(runs)
        );
    }
    let _ = writeln!(o);
}

fn footprint_section(o: &mut String, r: &Results) {
    let f = &r.footprint;
    let mib = |kb: u64| format!("{:.1} MiB", kb as f64 / 1024.0);
    let _ = writeln!(o, "## Footprint\n");
    let _ = writeln!(o, "| What | Value |\n|---|---|");
    let _ = writeln!(
        o,
        "| Idle RSS (fresh process, 0.5 s after ready) | {} ({} threads) |",
        mib(f.idle.rss_kb),
        f.idle.threads
    );
    let _ = writeln!(
        o,
        "| RSS after the whole load run, idle again (peak during it) | {} ({}) |",
        mib(f.after_load.rss_kb),
        mib(f.after_load.hwm_kb)
    );
    let _ = writeln!(
        o,
        "| Demo MCP child (separate process) | {} |",
        mib(f.mcp_child_kb)
    );
    if let Some(s) = &f.streams {
        let _ = writeln!(
            o,
            "| Peak RSS with 256 concurrent streams (workers: 256; 50 deltas 20 ms apart; kernel VmHWM of the fresh process) | {} ({} threads, sampled peak); {} streams complete, {} incomplete, {} × 503, {} I/O errors |",
            mib(f.streams_peak.rss_kb),
            f.streams_peak.threads,
            s.ok,
            s.incomplete,
            s.status_503,
            s.io_errors
        );
    }
    let r = &f.ready_ms;
    if !r.is_empty() {
        let _ = writeln!(
            o,
            "| Start-to-ready (spawn → first `GET /health` 200), {} starts | median {} ms, min {} ms, max {} ms |",
            r.len(),
            ms(median(r.clone())),
            ms(r[0]),
            ms(r[r.len() - 1])
        );
    }
    let _ = writeln!(
        o,
        "| Measured binary (stripped) | {:.2} MiB |",
        f.size_bytes as f64 / 1048576.0
    );
    if let Some(n) = f.static_size_bytes.filter(|n| *n > 0 && *n != f.size_bytes) {
        let _ = writeln!(
            o,
            "| Static binary (x86_64 musl, `make static`) | {:.2} MiB |",
            n as f64 / 1048576.0
        );
    }
    let _ = writeln!(o);
}

/// Which build every figure is of: the static one ships, a glibc build is a stand-in.
fn measured_binary(opts: &Opts) -> String {
    let path = opts.aiproxy.display().to_string();
    if path.contains("-musl/") {
        format!("`{path}`, the static musl build that ships (`make static`)")
    } else {
        format!(
            "`{path}`, a glibc development build (no musl toolchain, or `BENCH_STATIC=0`): \
             the shipped static binary allocates differently (see NOTES.md)"
        )
    }
}

fn reproduce(o: &mut String) {
    let _ = writeln!(
        o,
        "## How to reproduce\n\n\
         ```sh\nmake bench                      # release build, static build if musl-gcc exists, full run (~5 min)\n\
         BENCH_SECS=1 BENCH_REPEATS=1 make bench   # quick smoke run\n\
         BENCH_PIN=1 make bench          # load generator on CPU 1, servers on CPU 0\n```\n\n\
         `bench/run.sh` builds `target/release/aiproxy` and `make static` when `musl-gcc` is \
         installed, and measures the static binary, which ships (`BENCH_STATIC=0` measures the \
         glibc build instead), and the harness (`bench/`, its own crate: fake \
         upstream, load generator, driver), then runs `aiproxy-bench run`, which starts the \
         fake upstream, aiproxy and nginx (when installed; `target/bench/nginx/nginx.conf`) \
         on loopback ports with generated configs (`target/bench/bench-config.yaml`) and \
         writes this file; how the figures are taken is in NOTES.md. aiproxy's log of the run is \
         in `target/bench/aiproxy.log`. For ad-hoc runs: `aiproxy-bench upstream --listen \
         127.0.0.1:9000` and `aiproxy-bench load --addr HOST:PORT --concurrency N [--stream] \
         --message 'chunks=16 latency=5'`."
    );
}
