//! Time as poirot writes it: RFC 3339 UTC with microseconds for instants, the
//! protobuf JSON form for durations. Shared by the encoders and every output.

/// Formats microseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn format_rfc3339_us(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => String::from("1970-01-01T00:00:00Z"),
    }
}

/// Formats microseconds as a protobuf JSON duration.
pub fn format_duration_us(us: u64) -> String {
    let frac = us % 1_000_000;
    if frac == 0 {
        format!("{}s", us / 1_000_000)
    } else {
        let f = format!("{frac:06}");
        format!("{}.{}s", us / 1_000_000, f.trim_end_matches('0'))
    }
}
