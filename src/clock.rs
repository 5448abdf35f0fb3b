//! Wall-clock time as Unix timestamps, for the timestamps the API shows (`created`,
//! `created_at`, the metrics' start time), the logs' RFC 3339 times, and as entropy for ids and
//! jitter. Durations and deadlines use `Instant`, never this. A leaf; a clock before 1970 reads
//! as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nanoseconds since the Unix epoch (wraps in 2554).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `2026-01-02T03:04:05Z` from Unix seconds (UTC).
pub fn rfc3339(unix_secs: u64) -> String {
    let (date, time) = civil(unix_secs);
    format!("{date}T{time}Z")
}

/// `2026-01-02T03:04:05.678Z` from Unix nanoseconds (UTC).
pub fn rfc3339_millis(unix_nanos: u64) -> String {
    let (date, time) = civil(unix_nanos / 1_000_000_000);
    let millis = (unix_nanos / 1_000_000) % 1000;
    format!("{date}T{time}.{millis:03}Z")
}

/// `("YYYY-MM-DD", "hh:mm:ss")` of Unix seconds, by Howard Hinnant's `civil_from_days`.
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, (rem / 60) % 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        // A leap day, and a date in this century.
        assert_eq!(
            rfc3339_millis(951_782_400_123_000_000),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_millis(1_767_323_045_678_000_000),
            "2026-01-02T03:04:05.678Z"
        );
        assert_eq!(rfc3339(1_767_323_045), "2026-01-02T03:04:05Z");
    }
}
