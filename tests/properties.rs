//! Properties: every format decodes what it encodes, and results do not depend on
//! arrival order within the out-of-orderness bound.

mod common;

use poirot::runtime::Input;

use poirot::config::{Config, S3Behaviour};
use poirot::decode::{self, jaeger_json, jaeger_proto, jaeger_ui, otlp, Format};
use poirot::model::{Interner, RefKind, Span, SpanId, SpanKind, SpanRef, Sym, TraceId};
use poirot::sink::{files, prometheus};
use poirot::source::simulator::{SimConfig, Simulator};
use proptest::prelude::*;

/// A one-span encoder.
type EncodeOne = fn(&Span, &Interner, &[(&str, &str)]) -> Vec<u8>;

const KINDS: [SpanKind; 6] = [
    SpanKind::Unspecified,
    SpanKind::Internal,
    SpanKind::Server,
    SpanKind::Client,
    SpanKind::Producer,
    SpanKind::Consumer,
];

#[derive(Debug, Clone)]
struct RawSpan {
    trace: (u64, u64),
    span: u64,
    start_us: i64,
    duration_us: u64,
    parent: Option<u64>,
    links: Vec<(Option<(u64, u64)>, u64)>,
    service: String,
    operation: String,
    kind: usize,
    error: bool,
    destination: Option<String>,
    peer: Option<String>,
    db: Option<String>,
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _./:\"\\\\é-]{1,24}"
}

fn raw_span() -> impl Strategy<Value = RawSpan> {
    let ids = ((any::<u64>(), 1..=u64::MAX), 1..=u64::MAX);
    let times = (631_152_000_000_000i64..4_102_444_800_000_000, 0u64..=7 * 24 * 3600 * 1_000_000);
    let refs = (
        proptest::option::of(1..=u64::MAX),
        proptest::collection::vec((proptest::option::of((any::<u64>(), 1..=u64::MAX)), 1..=u64::MAX), 0..3),
    );
    let attrs = (
        (name(), name(), 0..6usize, any::<bool>()),
        (proptest::option::of(name()), proptest::option::of(name()), proptest::option::of(name())),
    );
    (ids, times, refs, attrs).prop_map(
        |(
            (trace, span),
            (start_us, duration_us),
            (parent, links),
            ((service, operation, kind, error), (destination, peer, db)),
        )| {
            RawSpan {
                trace,
                span,
                start_us,
                duration_us,
                parent,
                links,
                service,
                operation,
                kind,
                error,
                destination,
                peer,
                db,
            }
        },
    )
}

/// The model span: a same-trace child_of parent first, then follows_from links,
/// which is what every format can carry.
fn build(r: &RawSpan, names: &mut Interner) -> Span {
    let trace_id = TraceId::new(r.trace.0, r.trace.1);
    let mut refs: poirot::model::Refs = Default::default();
    if let Some(p) = r.parent {
        refs.push(SpanRef { trace_id, span_id: SpanId(p), kind: RefKind::ChildOf });
    }
    for (t, s) in &r.links {
        let t = t.map(|(h, l)| TraceId::new(h, l)).unwrap_or(trace_id);
        refs.push(SpanRef { trace_id: t, span_id: SpanId(*s), kind: RefKind::FollowsFrom });
    }
    let mut opt = |v: &Option<String>| v.as_deref().map(|s| names.intern(s)).unwrap_or(Sym(0));
    // One peer, on client spans only: `peer.service` before `db.system`, as
    // decoders choose by default.
    let destination = opt(&r.destination);
    let peer = if KINDS[r.kind] == SpanKind::Client {
        opt(if r.peer.is_some() { &r.peer } else { &r.db })
    } else {
        Sym(0)
    };
    Span {
        trace_id,
        span_id: SpanId(r.span),
        start_us: r.start_us,
        duration_us: r.duration_us,
        refs,
        service: names.intern(&r.service),
        operation: names.intern(&r.operation),
        destination,
        peer,
        statement: 0,
        adjusted_count: 0.0,
        dimensions: Default::default(),
        kind: KINDS[r.kind],
        error: r.error,
    }
}

/// Decodes `records` of `format` with fresh names; returns spans re-expressed in `into`.
fn decode_all(format: Format, records: &[Vec<u8>], into: &mut Interner) -> Vec<Span> {
    let (mut fresh, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
    for r in records {
        decode::decode(format, r, &mut fresh, &mut spans, &mut errors);
    }
    assert!(errors.is_empty(), "{format}: {errors:?}");
    // Map symbols back through their strings so spans compare across interners.
    let mut remap = |s: Sym| if s == Sym(0) { s } else { into.intern(fresh.resolve(s)) };
    for s in &mut spans {
        s.service = remap(s.service);
        s.operation = remap(s.operation);
        s.destination = remap(s.destination);
        s.peer = remap(s.peer);
    }
    spans.sort_by_key(|s| (s.trace_id, s.span_id));
    spans
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_format_decodes_what_it_encodes(raws in proptest::collection::vec(raw_span(), 1..12)) {
        let mut names = Interner::new();
        let mut spans: Vec<Span> = raws.iter().map(|r| build(r, &mut names)).collect();
        spans.sort_by_key(|s| (s.trace_id, s.span_id));
        spans.dedup_by_key(|s| (s.trace_id, s.span_id));
        let extra = [("http.method", "GET")];
        let per_span = |f: EncodeOne| -> Vec<Vec<u8>> {
            spans.iter().map(|s| f(s, &names, &extra)).collect()
        };
        let cases: Vec<(Format, Vec<Vec<u8>>)> = vec![
            (Format::JaegerProto, per_span(jaeger_proto::encode)),
            (Format::JaegerJson, per_span(jaeger_json::encode)),
            (Format::JaegerUi, vec![jaeger_ui::encode(&spans, &names)]),
            (Format::OtlpProto, vec![otlp::encode_proto(&spans, &names, &extra)]),
            (Format::OtlpJson, vec![otlp::encode_json(&spans, &names, &extra)]),
        ];
        for (format, records) in cases {
            for r in &records {
                prop_assert_eq!(decode::detect(r), Some(format));
            }
            let mut names2 = Interner::new();
            let decoded = decode_all(format, &records, &mut names2);
            // Compare through strings: the two interners number names differently.
            let show = |s: &Span, n: &Interner| format!(
                "{:?} {} {} {} {:?} {} {} {} {} {:?} {}",
                s.trace_id, s.span_id, s.start_us, s.duration_us, s.refs, n.resolve(s.service), n.resolve(s.operation),
                n.resolve(s.destination), n.resolve(s.peer), s.kind, s.error);
            let want: Vec<String> = spans.iter().map(|s| show(s, &names)).collect();
            let got: Vec<String> = decoded.iter().map(|s| show(s, &names2)).collect();
            prop_assert_eq!(got, want, "format {}", format);
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (mut names, mut spans, mut errors) = (Interner::new(), Vec::new(), Vec::new());
        for f in Format::ALL {
            decode::decode(f, &bytes, &mut names, &mut spans, &mut errors);
        }
        decode::decode_auto(&bytes, &mut names, &mut spans, &mut errors);
    }
}

/// All four outputs of a pipeline fed `spans` in order.
fn outputs(spans: &[Span], names: &Interner) -> Vec<String> {
    let mut p = common::pipeline();
    // Spans carry symbols of `names`: give the pipeline the same table.
    for i in 1..names.len() {
        p.names_mut().intern(names.resolve(Sym(i as u32)));
    }
    for s in spans {
        p.push(Input::Span { partition: 0, span: s.clone() });
    }
    p.push(Input::End);
    let mut anomalies: Vec<_> = p.drain_anomalies().collect();
    files::sort_anomalies(&mut anomalies);
    vec![
        serde_json::to_string(&anomalies).unwrap_or_default(),
        serde_json::to_string(&p.outputs().edges.service_rows(p.names())).unwrap_or_default(),
        serde_json::to_string(&p.outputs().edges.operation_rows(p.names())).unwrap_or_default(),
        prometheus::render_red(&p.outputs()),
        format!("{:?}", p.outputs().stats),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn results_do_not_depend_on_arrival_order_within_the_bound(
        seed in any::<u64>(),
        jitter_seed in any::<u64>(),
        s3 in prop_oneof![Just(S3Behaviour::Const), Just(S3Behaviour::Probabilistic), Just(S3Behaviour::Error)],
    ) {
        let mut names = Interner::new();
        let config = SimConfig { s3, message_loss_rate: 0.3, ping_pong_rate: 0.3, archive_every: 7, ..SimConfig::default() };
        // 40 workflows 200 ms apart: many traces open at once.
        let (spans, _) = Simulator::new(config, seed).batch(40, common::T0, 200_000, &mut names);
        let in_order = outputs(&spans, &names);

        // Delay each span by up to the allowed out-of-orderness (5 s).
        let bound = Config::default().assembly.out_of_orderness.as_micros() as i64;
        let mut rng = jitter_seed;
        let mut shuffled: Vec<(i64, Span)> = spans
            .iter()
            .map(|s| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s.event_time_us() + (rng >> 33) as i64 % bound, s.clone())
            })
            .collect();
        shuffled.sort_by_key(|(arrival, _)| *arrival);
        let shuffled: Vec<Span> = shuffled.into_iter().map(|(_, s)| s).collect();
        prop_assert_ne!(&shuffled, &spans);
        let out_of_order = outputs(&shuffled, &names);
        prop_assert_eq!(out_of_order, in_order);
    }
}
