//! Head sampling, as spans state it: how many spans of real traffic one
//! sampled span stands for (its adjusted count, 1/p for a sampling probability p).
//!
//! Two ways a trace says it was sampled with probability p:
//!
//! - Jaeger SDKs tag the root span `sampler.type` = `probabilistic` (or
//!   `lowerbound`, adaptive sampling's floor) with `sampler.param` = p. `const`
//!   says p = 1; `ratelimiting` states a rate, not a probability, and is ignored.
//! - OpenTelemetry consistent probability sampling writes the W3C `tracestate`
//!   entry `ot=th:T`: T is the rejection threshold, 1 to 14 hex digits (the
//!   missing ones are zeros), and p = (2^56 − T) / 2^56. Every span carries it
//!   (OTLP's `trace_state`, or Jaeger's tag `w3c.tracestate`).
//!
//! Where both are present, the threshold wins: it is exact and per span.

use super::Span;

/// The adjusted count of a trace: what a root span states (Jaeger SDKs tag only
/// the root), else the first span that states one; 1 when none does.
pub fn trace_adjusted_count(spans: &[Span]) -> f64 {
    let stated = |s: &&Span| s.adjusted_count > 0.0;
    spans
        .iter()
        .filter(|s| s.local_refs().next().is_none())
        .find(stated)
        .or_else(|| spans.iter().find(stated))
        .map_or(1.0, |s| f64::from(s.adjusted_count))
}

/// The adjusted count of a span counted on its own (late, or past its trace's
/// limit): what it states, else 1.
pub fn span_adjusted_count(s: &Span) -> f64 {
    if s.adjusted_count > 0.0 {
        f64::from(s.adjusted_count)
    } else {
        1.0
    }
}

/// 2^56: thresholds are 56-bit.
const THRESHOLD_SPACE: f64 = (1u64 << 56) as f64;

/// Whether `n` can be an adjusted count: from 1 (kept every time) to 2^56
/// (the finest a threshold states).
pub fn is_adjusted_count(n: f64) -> bool {
    (1.0..=THRESHOLD_SPACE).contains(&n)
}

/// The adjusted count of a span tagged `sampler.type` = `kind`, `sampler.param`
/// = `param`: `None` when it states no usable probability.
pub fn from_sampler(kind: &str, param: f64) -> Option<f64> {
    match kind {
        // Below 2^-56 no sampler draws finely enough (and 1/p would not be finite).
        "probabilistic" | "lowerbound" if (1.0 / THRESHOLD_SPACE..=1.0).contains(&param) => Some(1.0 / param),
        "const" if param > 0.0 => Some(1.0),
        _ => None,
    }
}

/// The adjusted count a W3C `tracestate` states through `ot=th:`; `None`
/// without a valid threshold.
pub fn from_tracestate(tracestate: &str) -> Option<f64> {
    let ot = tracestate.split(',').find_map(|member| member.trim().strip_prefix("ot="))?;
    let th = ot.split(';').find_map(|kv| kv.strip_prefix("th:"))?;
    if th.is_empty() || th.len() > 14 || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let threshold = u64::from_str_radix(th, 16).ok()? << (4 * (14 - th.len()));
    // th:0 keeps everything; the largest threshold, 2^56 − 1, keeps 1 in 2^56.
    // Subtracted as integers: as floats the largest thresholds round to 2^56.
    let kept = (1u64 << 56).checked_sub(threshold).filter(|&k| k > 0)?;
    Some(THRESHOLD_SPACE / kept as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaeger_probabilistic_sampling() {
        assert_eq!(from_sampler("probabilistic", 0.001), Some(1000.0));
        assert_eq!(from_sampler("probabilistic", 1.0), Some(1.0));
        assert_eq!(from_sampler("lowerbound", 0.5), Some(2.0));
        assert_eq!(from_sampler("const", 1.0), Some(1.0));
        for (kind, param) in [
            ("probabilistic", 0.0),
            ("probabilistic", 1.5),
            ("probabilistic", -0.1),
            ("probabilistic", 1e-40),
            ("probabilistic", f64::NAN),
            ("probabilistic", f64::INFINITY),
            ("ratelimiting", 2.0),
            ("const", 0.0),
            ("", 0.5),
        ] {
            assert_eq!(from_sampler(kind, param), None, "{kind} {param}");
        }
    }

    #[test]
    fn w3c_thresholds() {
        assert_eq!(from_tracestate("ot=th:0"), Some(1.0));
        assert_eq!(from_tracestate("ot=th:8"), Some(2.0), "half rejected");
        assert_eq!(from_tracestate("ot=th:c"), Some(4.0));
        assert_eq!(from_tracestate("vendor=x,ot=rv:abcdef01234567;th:fc"), Some(64.0));
        // The largest thresholds keep 1, 2, 3 in 2^56: large, never infinite.
        for (th, kept) in [("ffffffffffffff", 1.0), ("fffffffffffffe", 2.0), ("fffffffffffffd", 3.0)] {
            assert_eq!(from_tracestate(&format!("ot=th:{th}")), Some(THRESHOLD_SPACE / kept), "{th}");
        }
        // 0.1%: th = 2^56 · 0.999 rounded, as the specification's table has it.
        let p = 1.0 / from_tracestate("ot=th:ffbe76c8b43958").expect("threshold");
        assert!((p - 0.001).abs() < 1e-12, "{p}");
        for bad in ["", "ot=rv:00", "ot=th:", "ot=th:xyz", "ot=th:123456789abcdef", "other=th:8"] {
            assert_eq!(from_tracestate(bad), None, "{bad:?}");
        }
    }
}
