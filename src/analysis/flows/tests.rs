//! Deadlines and the indexed span.

use super::index::{IndexedSpan, PRODUCER_BIT};
use super::*;
use crate::model::SpanKind;

fn flows(deadlines: DeadlineConfig, names: &mut Interner) -> Flows {
    Flows::new(FlowConfig { deadlines, ..FlowConfig::default() }, names)
}

#[test]
fn the_deadline_follows_the_destinations_observed_latency_within_its_bounds() {
    let mut names = Interner::new();
    let config = DeadlineConfig { fixed: vec![("audit".into(), 600_000_000)], ..DeadlineConfig::default() };
    let mut f = flows(config, &mut names);
    let (queue, fast, audit) = (names.intern("queue"), names.intern("fast"), names.intern("audit"));
    assert_eq!(f.deadline_us(queue), 120_000_000, "never seen consumed: the floor");
    for _ in 0..1000 {
        f.observe_hop(fast, 3_000); // 3 ms
        f.observe_hop(queue, 60_000_000); // a slow queue: 60 s
    }
    assert_eq!(f.deadline_us(fast), 120_000_000, "fast hops keep the floor");
    // p99 in the bucket up to 2^16 ms (65.5 s), times 4.
    assert_eq!(f.deadline_us(queue), 4 * 65_536_000);
    for _ in 0..100 {
        f.observe_hop(queue, 3_000_000_000); // 50 minutes: beyond the cap
    }
    assert_eq!(f.deadline_us(queue), 3_600_000_000, "capped at max_deadline");
    f.observe_hop(audit, 1_000);
    assert_eq!(f.deadline_us(audit), 600_000_000, "a fixed deadline wins");
}

#[test]
fn an_indexed_span_is_16_bytes_and_keeps_its_start_and_kind() {
    assert_eq!(INDEXED_SPAN_BYTES, 16);
    let s = Span {
        span_id: SpanId(0x0123_4567_89ab_cdef),
        start_us: 1_000_250,
        kind: SpanKind::Producer,
        ..Span::default()
    };
    let x = IndexedSpan::new(&s, 1_000_000, 7);
    assert_eq!((x.id(), x.start_us(1_000_000), x.pair), (s.span_id, 1_000_250, 7));
    assert_ne!(x.start & PRODUCER_BIT, 0);
}
