//! Wall-clock time as Unix timestamps, for the timestamps the API shows (`created`,
//! `created_at`, the metrics' start time) and as entropy for ids and jitter. Durations and
//! deadlines use `Instant`, never this. A leaf; a clock before 1970 reads as 0.

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
