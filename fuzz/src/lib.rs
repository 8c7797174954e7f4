//! What the fuzz targets share: a pipeline set up as `poirot replay` sets it up,
//! and the checks every decoded span and every run must pass.
//!
//! Each target feeds libFuzzer's bytes through the same public calls the
//! pipeline makes ([`Pipeline::decode`], [`Pipeline::push`] with records,
//! and the end of input); a panic, an abort, an overflow (debug assertions are on)
//! or a failed check below is a crash.

use poirot::analysis::{AnalysisConfig, AssemblyConfig, DeadlineConfig, DetectedAt, DocLimits, FlowConfig};
use poirot::dataflow::{ManualClock, WatermarkConfig};
use poirot::decode::{
    detect, jaeger_json, jaeger_proto, jaeger_ui, otlp, DecodeError, Format, MAX_DETAIL_BYTES,
};
use poirot::model::{Interner, RefKind, Span, SpanId, SpanKind, SpanRef, Sym, TraceId};
use poirot::runtime::{Input, Pipeline, PipelineConfig};
use poirot::sink::{documents, files, prometheus};
use poirot::source::file::{detect_input, framing_for, RecordReader};
use std::sync::Arc;

/// 1990-01-01 and 2200-01-01 in µs since the epoch: the start times decoders accept.
const MIN_START_US: i64 = 631_152_000_000_000;
const MAX_START_US: i64 = 7_258_118_400_000_000;
/// A week in µs: the longest duration decoders accept.
const MAX_DURATION_US: u64 = 7 * 24 * 3600 * 1_000_000;

/// Limits of a pipeline under test.
#[derive(Clone, Copy)]
pub enum Limits {
    /// The defaults of `poirot replay`.
    Default,
    /// Small enough that short inputs reach every cap: spans per trace,
    /// buffered spans, series, names, name length, document sizes.
    Small,
}

/// A pipeline configured as `poirot replay` configures one (event time from the
/// spans only, anomalies stamped with the trace's close time), on a manual clock
/// so that a run depends on its input alone.
pub fn pipeline(limits: Limits) -> Pipeline {
    let (assembly, analysis) = match limits {
        Limits::Default => (AssemblyConfig::default(), AnalysisConfig::default()),
        Limits::Small => (
            AssemblyConfig { inactivity_gap_us: 2_000_000, max_spans_per_trace: 48, max_buffered_spans: 400 },
            AnalysisConfig {
                min_reentries: 2,
                max_spans_per_trace: 48,
                max_series: 32,
                max_names: 64,
                max_name_bytes: 40,
                documents: DocLimits {
                    max_evidence_spans: 8,
                    max_list_entries: 4,
                    max_summary_bytes: 160,
                    max_document_bytes: 4 << 10,
                },
                ..AnalysisConfig::default()
            },
        ),
    };
    let flows = match limits {
        Limits::Default => FlowConfig::default(),
        // Short deadlines and retention and a tiny index: losses are decided, resolved,
        // and index entries evicted within short inputs.
        Limits::Small => FlowConfig {
            closed_retention_us: 5_000_000,
            max_closed_bytes: 2_048,
            max_waiting_links: 16,
            deadlines: DeadlineConfig { min_us: 1_000_000, max_us: 4_000_000, ..DeadlineConfig::default() },
        },
    };
    let config = PipelineConfig {
        assembly,
        watermark: WatermarkConfig { out_of_orderness_us: 1_000_000, idle_timeout_us: i64::MAX },
        analysis,
        flows,
        detected_at: DetectedAt::TraceClose,
        dimensions: Vec::new(),
    };
    Pipeline::new(config, Arc::new(ManualClock::new(0)))
}

/// Decodes one record (`format` `None`: detected, as `poirot run` does with
/// `format = "auto"`), checks what came out, and checks that each decoded span
/// survives being encoded in the same format and decoded again unchanged.
pub fn decode_record(format: Option<Format>, record: &[u8]) {
    let mut p = pipeline(Limits::Default);
    let mut spans = Vec::new();
    let outcome = p.decode(format, record, &mut spans);
    assert_eq!(outcome.spans, spans.len());
    assert_eq!(p.outputs().input.records, 1);
    match &outcome.error {
        Some(e) => {
            assert!(p.outputs().input.bad_total() >= 1, "an error that was not counted: {e}");
            assert!(e.detail.len() <= MAX_DETAIL_BYTES, "error detail of {} bytes", e.detail.len());
        }
        None => assert_eq!(p.outputs().input.bad_total(), 0),
    }
    for s in &spans {
        check_span(s, p.names());
    }
    let format = format.or_else(|| detect(record));
    // The JSON decoders walk the text with their own reader: a record they read
    // without an error must be JSON to serde_json too.
    if matches!(format, Some(Format::JaegerJson | Format::OtlpJson)) && outcome.error.is_none() {
        let json = serde_json::from_slice::<serde_json::Value>(record);
        assert!(json.is_ok(), "read without error but not JSON: {json:?}");
    }
    if let (Some(f), false) = (format, spans.is_empty()) {
        round_trip(f, &spans, p.names_mut());
        rekeyed_round_trip(&spans, p.names_mut());
    }
}

/// One record of the repartition topic read as a batch (`jaeger.api_v2.Batch`):
/// every error counted, every span kept valid.
pub fn decode_shuffled_batch(record: &[u8]) {
    let mut p = pipeline(Limits::Default);
    let mut spans = Vec::new();
    let outcome = p.decode_shuffled(record, true, &mut spans);
    assert_eq!(outcome.spans, spans.len());
    assert_eq!(outcome.error.is_some(), p.outputs().input.bad_total() >= 1, "{:?}", outcome.error);
    for s in &spans {
        check_span(s, p.names());
    }
    if !spans.is_empty() {
        rekeyed_round_trip(&spans, p.names_mut());
    }
}

/// What the repartition stage writes of `spans` (one batch) reads back as they
/// are, in order: re-keying changes nothing a reader sees.
fn rekeyed_round_trip(spans: &[Span], names: &mut Interner) {
    let mut batch = Vec::new();
    for s in spans {
        jaeger_proto::write_batch_span(&mut batch, s, names);
    }
    let (mut again, mut errors) = (Vec::new(), Vec::new());
    jaeger_proto::decode_batch(&batch, names, &mut again, &mut errors);
    assert!(errors.is_empty(), "re-keyed spans do not decode: {errors:?}");
    assert_eq!(spans, &again[..], "spans changed on the way through the repartition topic");
}

/// A span as every analysis may assume it: valid ids, plausible times, names within the cap.
pub fn check_span(s: &Span, names: &Interner) {
    assert!(!s.trace_id.is_zero(), "zero trace id: {s:?}");
    assert!(!s.span_id.is_zero(), "zero span id: {s:?}");
    assert!((MIN_START_US..MAX_START_US).contains(&s.start_us), "start out of range: {s:?}");
    assert!(s.duration_us <= MAX_DURATION_US, "duration out of range: {s:?}");
    for r in &s.refs {
        assert!(!r.trace_id.is_zero() && !r.span_id.is_zero(), "zero id in a reference: {s:?}");
    }
    let max = names.max_name_bytes();
    for sym in [s.service, s.operation, s.destination, s.peer] {
        check_name(sym, names, max);
    }
    assert_ne!(s.service, Sym::default(), "a span without a service: {s:?}");
}

fn check_name(sym: Sym, names: &Interner, max: usize) {
    let name = names.resolve(sym);
    assert!(max == 0 || name.len() <= max, "name of {} bytes over the {max}-byte cap", name.len());
}

/// Encodes `spans` in `format` and decodes them again: the same spans must come back.
fn round_trip(format: Format, spans: &[Span], names: &mut Interner) {
    let mut again = Vec::new();
    let mut errors = Vec::new();
    match format {
        Format::JaegerProto | Format::JaegerJson => {
            for s in spans {
                let bytes = if format == Format::JaegerProto {
                    jaeger_proto::encode(s, names, &[])
                } else {
                    jaeger_json::encode(s, names, &[])
                };
                poirot::decode::decode(format, &bytes, names, &mut again, &mut errors);
            }
        }
        Format::JaegerUi => {
            jaeger_ui::decode(&jaeger_ui::encode(spans, names), names, &mut again, &mut errors)
        }
        Format::OtlpProto => {
            otlp::decode_proto(&otlp::encode_proto(spans, names, &[]), names, &mut again, &mut errors)
        }
        Format::OtlpJson => {
            otlp::decode_json(&otlp::encode_json(spans, names, &[]), names, &mut again, &mut errors)
        }
    }
    assert!(errors.is_empty(), "{format}: re-encoded spans do not decode: {errors:?}");
    assert_eq!(sorted(spans), sorted(&again), "{format}: spans changed on the way out and back");
}

fn sorted(spans: &[Span]) -> Vec<String> {
    let mut v: Vec<String> = spans.iter().map(|s| format!("{s:?}")).collect();
    v.sort_unstable();
    v
}

/// Replays `input` as `poirot replay --format auto` reads a file: the first bytes
/// pick the format and its framing, every record goes through the whole
/// pipeline, the end of the input closes every trace, and the outputs replay
/// writes (anomaly documents, dependency rows, metrics) are rendered.
pub fn replay(input: &[u8], limits: Limits) {
    let head = &input[..input.len().min(64 << 10)];
    let records: Vec<_> = match detect_input(head) {
        Some(format) => RecordReader::new(input, framing_for(format)).map(|r| (0, Some(format), r)).collect(),
        None => Vec::new(),
    };
    run(records, limits);
}

/// Pushes `records` (partition, format, record or framing error) through a
/// pipeline, finishes it, checks it and renders its outputs.
fn run(records: Vec<(u32, Option<Format>, Result<Vec<u8>, DecodeError>)>, limits: Limits) {
    let mut p = pipeline(limits);
    let mut anomalies = Vec::new();
    let mut pushed = 0u64;
    for (partition, format, record) in records {
        match record {
            Ok(bytes) => {
                pushed += 1;
                p.push(Input::Record { partition, offset: None, format, bytes: &bytes });
            }
            Err(e) => {
                p.push(Input::Rejected(e));
            }
        }
        anomalies.extend(p.drain_anomalies());
    }
    p.push(Input::End);
    anomalies.extend(p.drain_anomalies());
    assert_eq!(p.outputs().input.records, pushed);
    assert_eq!(p.outputs().open_traces, 0, "a trace still open after the end of the input");
    assert_eq!(p.outputs().buffered_spans, 0, "spans still buffered after the end of the input");
    assert!(p.outputs().stats.spans <= p.outputs().input.spans, "more spans analysed than decoded");

    files::sort_anomalies(&mut anomalies);
    let max_document = match limits {
        Limits::Default => AnalysisConfig::default().documents.max_document_bytes,
        Limits::Small => 4 << 10,
    };
    for a in &anomalies {
        let doc = serde_json::to_string(a).expect("an anomaly document serialises");
        assert!(
            doc.len() <= max_document,
            "{} document of {} bytes over the {max_document}-byte cap",
            a.kind.as_str(),
            doc.len()
        );
        let _ = documents::document_id(a);
        let _ = documents::index_name("poirot-anomalies", a);
    }
    serde_json::to_string(&p.outputs().edges.service_rows(p.names())).expect("service rows serialise");
    serde_json::to_string(&p.outputs().edges.operation_rows(p.names())).expect("operation rows serialise");
    if matches!(limits, Limits::Small) {
        // The costliest output to render; the small caps leave the fewest series.
        let _ = prometheus::render_red(&p.outputs());
    }
}

/// Bytes of one span in [`span_program`].
const SPAN_BYTES: usize = 8;

/// Reads `input` as a compact program of spans, 8 bytes each, so that every
/// input is a trace shape (the decoders' fuzz targets cover the bytes of the
/// wire formats): a few traces, a few span ids each, references to any of them
/// (missing, cyclic, self, cross-trace, follows_from), duplicates, producers and
/// consumers of a few destinations, errors, start times spread over minutes so
/// that traces close and spans come late, on four partitions. Each span is
/// encoded as Jaeger protobuf and pushed as a record, as a Kafka source would.
///
/// | byte | bits |
/// |---|---|
/// | 0 | trace (0-1), span kind (2-4), error (5), reference is follows_from (6), reference is to the next trace (7) |
/// | 1 | span id 1..=16 (0-3), referenced span id (4-7; 0: none) |
/// | 2 | service (0-2), operation (3-5), destination (6-7; 0: none) |
/// | 3 | partition (0-1), a second reference to span id (2-5; 0: none), duplicate this span (6), peer.service (7) |
/// | 4-5 | start, 10 ms steps after 2026-01-01 |
/// | 6-7 | duration, ms |
pub fn span_program(input: &[u8]) -> Vec<(u32, Option<Format>, Result<Vec<u8>, DecodeError>)> {
    const T0_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    let mut names = Interner::new();
    let services: Vec<Sym> = (0..8).map(|i| names.intern(&format!("svc{i}"))).collect();
    let operations: Vec<Sym> = (0..8).map(|i| names.intern(&format!("op{i}"))).collect();
    let destinations =
        [Sym::default(), names.intern("topic-a"), names.intern("topic-b"), names.intern("topic-c")];
    let kinds = [
        SpanKind::Unspecified,
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];
    let trace = |t: u8| TraceId::new(0x5eed, u64::from(t & 3) + 1);
    let mut records = Vec::new();
    for b in input.chunks_exact(SPAN_BYTES) {
        let trace_id = trace(b[0]);
        let mut span = Span {
            trace_id,
            span_id: SpanId(u64::from(b[1] & 0xf) + 1),
            start_us: T0_US + i64::from(u16::from_le_bytes([b[4], b[5]])) * 10_000,
            duration_us: u64::from(u16::from_le_bytes([b[6], b[7]])) * 1000,
            service: services[usize::from(b[2] & 7)],
            operation: operations[usize::from((b[2] >> 3) & 7)],
            destination: destinations[usize::from(b[2] >> 6)],
            peer: if b[3] & 0x80 != 0 { services[usize::from(b[2] & 7) ^ 1] } else { Sym::default() },
            kind: kinds[usize::from((b[0] >> 2) & 7)],
            error: b[0] & 0x20 != 0,
            ..Span::default()
        };
        let kind = if b[0] & 0x40 != 0 { RefKind::FollowsFrom } else { RefKind::ChildOf };
        if b[1] >> 4 != 0 {
            let to = if b[0] & 0x80 != 0 { trace(b[0].wrapping_add(1)) } else { trace_id };
            span.refs.push(SpanRef { trace_id: to, span_id: SpanId(u64::from(b[1] >> 4)), kind });
        }
        if (b[3] >> 2) & 0xf != 0 {
            span.refs.push(SpanRef { trace_id, span_id: SpanId(u64::from((b[3] >> 2) & 0xf)), kind });
        }
        let partition = u32::from(b[3] & 3);
        let record = jaeger_proto::encode(&span, &names, &[]);
        if b[3] & 0x40 != 0 {
            records.push((partition, Some(Format::JaegerProto), Ok(record.clone())));
        }
        records.push((partition, Some(Format::JaegerProto), Ok(record)));
    }
    records
}

/// Runs [`span_program`] through the pipeline, with both limits.
pub fn spans(input: &[u8]) {
    let records = span_program(input);
    run(records.clone(), Limits::Default);
    run(records, Limits::Small);
}
