//! Figures derived from runs, shared by the report ([`crate::report`]) and the verdicts
//! ([`crate::targets`]): medians over repeats, quantiles with failures ranked as the worst
//! case, differences of quantiles, CPU per request, and formatting.
//!
//! Honesty rules these helpers carry: a latency quantile counts every request recorded in the
//! window, a failed one (503, incomplete, I/O error, other status) as slower than any success
//! (so a p99 with more than 1 % failures is ∞); "added" figures are the difference of two
//! quantiles of separate runs (proxy p99 − direct p99), not a quantile of paired differences.
//!
//! Thread model: pure computation on the driver thread.

use crate::load::{Stats, quantile_ms, quantile_worst_ms};
use crate::scenarios::{Pair, Results};

pub fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median over repeats of a per-run figure.
pub fn q(stats: &[Stats], f: impl Fn(&Stats) -> f64) -> f64 {
    median(stats.iter().map(f).collect())
}

/// Latency quantile (ms), failures as the worst case.
pub fn lat(s: &Stats, p: f64) -> f64 {
    quantile_worst_ms(&s.latency_us, s.failed(), p)
}

/// Latency quantile (ms) of complete 200s only (where failures are reported beside it).
pub fn lat_ok(s: &Stats, p: f64) -> f64 {
    quantile_ms(&s.latency_us, p)
}

/// Time-to-first-token quantile (ms), failures as the worst case.
pub fn ttfb(s: &Stats, p: f64) -> f64 {
    quantile_worst_ms(&s.first_us, s.failed(), p)
}

/// Median over repeats of (side − direct) for one per-run figure: with a quantile, the
/// difference of the two runs' quantiles.
pub fn added_vs(direct: &[Stats], side: &[Stats], f: impl Fn(&Stats) -> f64) -> f64 {
    median(
        direct
            .iter()
            .zip(side)
            .map(|(d, s)| {
                let (a, b) = (f(s), f(d));
                if a.is_infinite() { a } else { a - b }
            })
            .collect(),
    )
}

/// [`added_vs`] for aiproxy.
pub fn added(pair: &Pair, f: impl Fn(&Stats) -> f64) -> f64 {
    added_vs(&pair.direct, &pair.proxy, f)
}

/// [`added_vs`] for nginx (NaN when nginx was not measured).
pub fn added_nginx(pair: &Pair, f: impl Fn(&Stats) -> f64) -> f64 {
    added_vs(&pair.direct, &pair.nginx, f)
}

/// Median over repeats of the CPU per request (ms) of a side.
pub fn cpu(stats: &[Stats]) -> f64 {
    q(stats, Stats::cpu_per_request_ms)
}

/// Failed requests over all repeats of a side.
pub fn failed(stats: &[Stats]) -> usize {
    sum(stats, Stats::failed)
}

pub fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x.is_infinite() {
        "∞ (failures)".into()
    } else if x.abs() < 10.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.1}")
    }
}

/// A difference in ms with its sign: "+0.276", "−3.840" (a Δ of two quantiles can be
/// negative: noise, or a reference slower than the proxy).
pub fn delta(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x < 0.0 {
        format!("−{}", ms(-x))
    } else {
        format!("+{}", ms(x))
    }
}

/// `a / b` as "N.NN×", "–" when either is missing or the reference is not positive.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "✅ met" } else { "❌ missed" }
}

/// A verdict that is never met with failed requests, and says how many there were.
pub fn verdict_with(ok: bool, failures: usize) -> String {
    match failures {
        0 => verdict(ok).to_string(),
        n => format!("❌ missed ({n} failed requests)"),
    }
}

pub fn sum(stats: &[Stats], f: impl Fn(&Stats) -> usize) -> usize {
    stats.iter().map(f).sum()
}

pub fn find<'a>(pairs: &'a [Pair], id: &str, c: usize) -> Option<&'a Pair> {
    pairs
        .iter()
        .find(|p| p.shape.id == id && p.shape.concurrency == c)
}

/// Per-iteration overhead of the tool loop and its parts: medians over repeats, each repeat's
/// overhead computed from figures measured next to each other; `overhead_min`/`_max` show the
/// spread between repeats; `failed` counts failed requests of the tool-loop runs.
pub struct ToolFigures {
    pub per_iteration: f64,
    pub upstream: f64,
    pub tool: f64,
    pub overhead: f64,
    pub overhead_min: f64,
    pub overhead_max: f64,
    pub failed: usize,
}

pub fn tool_figures(r: &Results) -> ToolFigures {
    let t = &r.tools;
    let k = t.iterations as f64;
    let mut per = Vec::new();
    let mut up = Vec::new();
    let mut tool = Vec::new();
    let mut over = Vec::new();
    for (((b, l), u), tl) in t
        .base
        .iter()
        .zip(&t.looped)
        .zip(&t.upstream)
        .zip(&t.tool_us)
    {
        let p = (lat(l, 0.5) - lat(b, 0.5)) / k;
        let (u, tl) = (lat(u, 0.5), quantile_ms(tl, 0.5));
        per.push(p);
        up.push(u);
        tool.push(tl);
        over.push(p - u - tl);
    }
    let finite: Vec<f64> = over.iter().copied().filter(|x| x.is_finite()).collect();
    ToolFigures {
        per_iteration: median(per),
        upstream: median(up),
        tool: median(tool),
        overhead: median(over),
        overhead_min: finite.iter().copied().fold(f64::NAN, f64::min),
        overhead_max: finite.iter().copied().fold(f64::NAN, f64::max),
        failed: failed(&t.base) + failed(&t.looped) + failed(&t.upstream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(lat_ms: &[u32], failed: usize, cpu_ms: f64) -> Stats {
        Stats {
            window: Duration::from_secs(1),
            ok: lat_ms.len(),
            io_errors: failed,
            latency_us: lat_ms.iter().map(|m| m * 1000).collect(),
            cpu_ms: Some(cpu_ms),
            ..Stats::default()
        }
    }

    #[test]
    fn added_is_the_median_difference_of_quantiles_and_failures_are_never_hidden() {
        let direct = vec![run(&[1, 2, 3], 0, 0.0), run(&[1, 2, 5], 0, 0.0)];
        let proxy = vec![run(&[2, 3, 4], 0, 3.0), run(&[2, 3, 9], 0, 6.0)];
        // p50s: direct 2, 2; proxy 3, 3 → +1. Max: 3→4 (+1), 5→9 (+4) → median 2.5.
        assert_eq!(added_vs(&direct, &proxy, |s| lat(s, 0.5)), 1.0);
        assert_eq!(added_vs(&direct, &proxy, |s| lat(s, 1.0)), 2.5);
        assert_eq!(cpu(&proxy), 1.5);
        // One failure among three: the maximum is a failure, and stays ∞ once subtracted.
        let bad = vec![run(&[2, 3], 1, 0.0), run(&[2, 3], 1, 0.0)];
        assert!(added_vs(&direct, &bad, |s| lat(s, 1.0)).is_infinite());
        assert_eq!(failed(&bad), 2);
        assert!(verdict_with(true, 2).contains("missed"));
        assert_eq!(verdict_with(true, 0), "✅ met");
        assert_eq!(ratio(3.0, 2.0), "1.50×");
        assert_eq!(ratio(3.0, 0.0), "–");
        assert_eq!(delta(-3.84), "−3.840");
        assert_eq!(delta(0.5), "+0.500");
        assert_eq!(delta(f64::INFINITY), "+∞ (failures)");
    }
}
