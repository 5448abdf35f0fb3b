//! Numbers and durations for the schema reader (`raw`): integers with bounds, floats with
//! ranges, durations with units. Each accepts the string forms env expansion produces
//! (`${TTL:-60}` gives "60"). Pure functions.

use std::time::Duration;

use serde_yaml::Value as Yaml;

use super::raw::{Path, Problems};

/// A number as written: integers stay exact, so `max_tokens: 9007199254740993` is not rounded.
enum Num {
    Int(i128),
    Float(f64),
}

fn num(v: &Yaml) -> Option<Num> {
    match v {
        Yaml::Number(n) => {
            if let Some(u) = n.as_u64() {
                Some(Num::Int(u.into()))
            } else if let Some(i) = n.as_i64() {
                Some(Num::Int(i.into()))
            } else {
                n.as_f64().filter(|f| f.is_finite()).map(Num::Float)
            }
        }
        Yaml::String(s) => parse_num(s.trim()),
        _ => None,
    }
}

fn parse_num(s: &str) -> Option<Num> {
    if let Ok(i) = s.parse::<i128>() {
        return Some(Num::Int(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Num::Float)
}

/// An integer in `min..=max`. `8.0` counts as 8; `8.5` does not.
pub(super) fn integer(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
    min: u64,
    max: u64,
) -> Option<u64> {
    if v.is_null() {
        return None;
    }
    let value = match num(v) {
        Some(Num::Int(i)) => Some(i),
        // The bound keeps the cast exact (|f| < 2^63).
        Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i128),
        _ => None,
    };
    let Some(value) = value else {
        problems.add(path, "expected an integer");
        return None;
    };
    if value < i128::from(min) {
        if min == 0 {
            problems.add(path, "must not be negative");
        } else {
            problems.add(path, format!("must be at least {min}"));
        }
        return None;
    }
    if value > i128::from(max) {
        problems.add(path, format!("must be at most {max}"));
        return None;
    }
    u64::try_from(value).ok()
}

/// [`integer`] for counts held in a `usize`.
pub(super) fn count(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
    min: u64,
    max: u64,
) -> Option<usize> {
    integer(problems, path, v, min, max).and_then(|n| usize::try_from(n).ok())
}

/// A number in `min..=max`.
pub(super) fn number(
    problems: &mut Problems,
    path: &Path,
    v: &Yaml,
    min: f64,
    max: f64,
) -> Option<f64> {
    if v.is_null() {
        return None;
    }
    let value = match num(v) {
        Some(Num::Int(i)) => i as f64,
        Some(Num::Float(f)) => f,
        None => {
            problems.add(path, "expected a number");
            return None;
        }
    };
    if !(min..=max).contains(&value) {
        problems.add(path, format!("must be between {min} and {max}"));
        return None;
    }
    Some(value)
}

/// A duration greater than zero, for timeouts (zero would fail every call): a number of
/// seconds (`30`, `0.5`) or a number with a unit (`500ms`, `30s`, `5m`, `1h`).
pub(super) fn duration(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<Duration> {
    let d = duration_or_zero(problems, path, v)?;
    if d.is_zero() {
        problems.add(path, "must be greater than 0");
        return None;
    }
    Some(d)
}

/// A duration where zero means something (no grace period, no caching); the forms of
/// [`duration`].
pub(super) fn duration_or_zero(problems: &mut Problems, path: &Path, v: &Yaml) -> Option<Duration> {
    if v.is_null() {
        return None;
    }
    parse_duration(v).map_err(|e| problems.add(path, e)).ok()
}

fn parse_duration(v: &Yaml) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a duration: seconds, or a number with a unit (500ms, 30s, 5m, 1h)";
    let (value, unit_secs) = match v {
        Yaml::Number(_) => match num(v) {
            Some(Num::Int(i)) => (i as f64, 1.0),
            Some(Num::Float(f)) => (f, 1.0),
            None => return Err(EXPECTED.into()),
        },
        Yaml::String(s) => {
            let s = s.trim();
            // Longest suffix first: "ms" before "m" and "s".
            let (digits, unit) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
                .iter()
                .find_map(|(suffix, secs)| s.strip_suffix(suffix).map(|d| (d, *secs)))
                .unwrap_or((s, 1.0));
            match parse_num(digits.trim()) {
                Some(Num::Int(i)) => (i as f64, unit),
                Some(Num::Float(f)) => (f, unit),
                None => return Err(EXPECTED.into()),
            }
        }
        _ => return Err(EXPECTED.into()),
    };
    if value < 0.0 {
        return Err("must not be negative".into());
    }
    Duration::try_from_secs_f64(value * unit_secs).map_err(|_| "is too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Yaml {
        serde_yaml::from_str(s).unwrap()
    }

    fn run<T>(f: impl FnOnce(&mut Problems, &Path) -> T) -> (T, Vec<String>) {
        let mut p = Problems::default();
        let out = f(&mut p, &Path::root("(top level)").key("x"));
        (out, p.into_result(()).err().unwrap_or_default())
    }

    #[test]
    fn durations_in_every_form() {
        let cases = [
            ("30", 30_000),
            ("0.5", 500),
            ("'30'", 30_000),
            ("500ms", 500),
            ("30s", 30_000),
            ("1.5s", 1_500),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("' 2 m '", 120_000),
            ("0", 0),
        ];
        for (src, ms) in cases {
            let (d, problems) = run(|p, path| duration_or_zero(p, path, &y(src)));
            assert_eq!(problems, Vec::<String>::new(), "{src}");
            assert_eq!(d, Some(Duration::from_millis(ms)), "{src}");
        }
    }

    #[test]
    fn bad_durations_name_the_problem() {
        let cases = [
            ("-1", "x: must not be negative"),
            ("'-2s'", "x: must not be negative"),
            (
                "10 minutes",
                "x: expected a duration: seconds, or a number with a unit (500ms, 30s, 5m, 1h)",
            ),
            (
                "[1]",
                "x: expected a duration: seconds, or a number with a unit (500ms, 30s, 5m, 1h)",
            ),
            ("1e300h", "x: is too large"),
        ];
        for (src, want) in cases {
            let (d, problems) = run(|p, path| duration_or_zero(p, path, &y(src)));
            assert_eq!((d, problems), (None, vec![want.to_string()]), "{src}");
        }
        let (d, problems) = run(|p, path| duration(p, path, &y("0s")));
        assert_eq!(
            (d, problems),
            (None, vec!["x: must be greater than 0".to_string()])
        );
    }

    #[test]
    fn integers_accept_strings_and_whole_floats() {
        for (src, want) in [("8", 8), ("'8'", 8), ("8.0", 8), ("' 12 '", 12)] {
            let (n, problems) = run(|p, path| integer(p, path, &y(src), 0, 100));
            assert_eq!((n, problems.len()), (Some(want), 0), "{src}");
        }
        let bad = [
            ("8.5", "x: expected an integer"),
            ("abc", "x: expected an integer"),
            ("true", "x: expected an integer"),
            ("-1", "x: must not be negative"),
            ("101", "x: must be at most 100"),
        ];
        for (src, want) in bad {
            let (n, problems) = run(|p, path| integer(p, path, &y(src), 0, 100));
            assert_eq!((n, problems), (None, vec![want.to_string()]), "{src}");
        }
        let (_, problems) = run(|p, path| integer(p, path, &y("0"), 1, 10));
        assert_eq!(problems, ["x: must be at least 1"]);
    }

    #[test]
    fn numbers_from_strings() {
        let (f, problems) = run(|p, path| number(p, path, &y("'0.2'"), 0.0, 2.0));
        assert_eq!((f, problems.len()), (Some(0.2), 0));
        let (f, problems) = run(|p, path| number(p, path, &y("2.5"), 0.0, 2.0));
        assert_eq!(
            (f, problems),
            (None, vec!["x: must be between 0 and 2".to_string()])
        );
        let (f, problems) = run(|p, path| number(p, path, &y("'nan'"), 0.0, 2.0));
        assert_eq!(
            (f, problems),
            (None, vec!["x: expected a number".to_string()])
        );
    }
}
