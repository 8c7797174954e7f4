//! Time parsing and plausibility checks shared by the decoders.

use super::{DecodeError, Reason};
pub use crate::model::time::{format_duration_us, format_rfc3339_us};

/// 1990-01-01T00:00:00Z in microseconds: no tracer emitted spans before that.
const MIN_START_US: i64 = 631_152_000_000_000;
/// 2200-01-01T00:00:00Z in microseconds.
const MAX_START_US: i64 = 7_258_118_400_000_000;
/// A week: longer spans are taken as broken clocks, not real work.
pub const MAX_DURATION_US: i64 = 7 * 24 * 3600 * 1_000_000;

/// Checks a start time and duration, both in microseconds.
pub fn check(start_us: i64, duration_us: i64) -> Result<(i64, u64), DecodeError> {
    if !(MIN_START_US..MAX_START_US).contains(&start_us) {
        return Err(DecodeError::new(
            Reason::InvalidTime,
            format!("start time {start_us} µs since epoch is outside 1990..2200"),
        ));
    }
    if !(0..=MAX_DURATION_US).contains(&duration_us) {
        return Err(DecodeError::new(
            Reason::InvalidTime,
            format!("duration {duration_us} µs is negative or longer than a week"),
        ));
    }
    Ok((start_us, duration_us as u64))
}

/// Parses an RFC 3339 timestamp into microseconds since the epoch.
pub fn parse_rfc3339_us(s: &str) -> Result<i64, DecodeError> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| DecodeError::new(Reason::InvalidTime, format!("start time {s:?}: {e}")))?;
    Ok(t.timestamp_micros())
}

/// Parses a protobuf JSON duration (`"0.0015s"`, `"-1s"`, `"3s"`) into microseconds.
pub fn parse_duration_us(s: &str) -> Result<i64, DecodeError> {
    let bad = || DecodeError::new(Reason::InvalidTime, format!("duration {s:?} is not like \"0.0015s\""));
    let body = s.strip_suffix('s').ok_or_else(bad)?;
    let (neg, body) = match body.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, body),
    };
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    if secs.is_empty() || frac.len() > 9 || !secs.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.bytes().enumerate() {
        nanos += i64::from(c - b'0') * 10_i64.pow(8 - i as u32);
    }
    let us = secs.checked_mul(1_000_000).and_then(|v| v.checked_add(nanos / 1000)).ok_or_else(bad)?;
    Ok(if neg { -us } else { us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("0.0015s"), Ok(1500));
        assert_eq!(parse_duration_us("3s"), Ok(3_000_000));
        assert_eq!(parse_duration_us("1.000000001s"), Ok(1_000_000));
        assert_eq!(parse_duration_us("-1s"), Ok(-1_000_000));
        assert!(parse_duration_us("1.5").is_err());
        assert!(parse_duration_us("s").is_err());
        assert!(parse_duration_us("1e3s").is_err());
        assert_eq!(format_duration_us(1500), "0.0015s");
        assert_eq!(format_duration_us(3_000_000), "3s");
    }

    #[test]
    fn rfc3339() {
        let us = parse_rfc3339_us("2026-11-22T10:00:00.123456789Z").expect("valid");
        assert_eq!(us % 1_000_000, 123_456);
        assert_eq!(parse_rfc3339_us(&format_rfc3339_us(us)), Ok(us));
        assert!(parse_rfc3339_us("yesterday").is_err());
    }

    #[test]
    fn absurd_times_are_rejected() {
        assert!(check(0, 1).is_err());
        assert!(check(1_700_000_000_000_000, -1).is_err());
        assert!(check(1_700_000_000_000_000, MAX_DURATION_US + 1).is_err());
        assert!(check(1_700_000_000_000_000, 5).is_ok());
    }
}
