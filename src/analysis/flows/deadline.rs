//! Per-destination deadlines of pending producers, from configuration or from
//! the observed producer → consumer latency.

/// How long a producer may wait for a consumer, per destination.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadlineConfig {
    /// The least deadline: a destination never seen consumed, or consumed fast.
    pub min_us: i64,
    /// The largest deadline the observed latency may set.
    pub max_us: i64,
    /// The deadline is this multiple of the destination's observed 99th
    /// percentile producer → consumer latency (within `min_us..=max_us`).
    pub latency_factor: f64,
    /// Deadlines set by hand, per destination name: the observed latency is not used.
    pub fixed: Vec<(String, i64)>,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        DeadlineConfig { min_us: 120_000_000, max_us: 3_600_000_000, latency_factor: 4.0, fixed: Vec::new() }
    }
}

/// Observed producer → consumer latencies of one destination: counts per
/// power-of-two bucket of milliseconds.
#[derive(Debug, Default, Clone)]
pub(super) struct Latencies {
    pub(super) buckets: [u32; 32],
    pub(super) count: u64,
}

impl Latencies {
    pub(super) fn observe(&mut self, us: i64) {
        let ms = (us.max(0) / 1000) as u64;
        let b = (64 - ms.leading_zeros()).min(31) as usize; // 0 ms → 0, 1 → 1, 2-3 → 2, ...
        self.buckets[b] = self.buckets[b].saturating_add(1);
        self.count += 1;
    }

    /// The upper bound of the bucket holding the 99th percentile, µs.
    pub(super) fn p99_us(&self) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let want = self.count - self.count / 100;
        let mut seen = 0u64;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= want {
                return Some((1i64 << b) * 1000);
            }
        }
        Some((1i64 << 31) * 1000)
    }
}
