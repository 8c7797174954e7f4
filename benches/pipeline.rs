//! Throughput of poirot's hot path, and memory per buffered span.
//!
//! `cargo bench --bench pipeline` (or `make bench`). Every group works on the same
//! realistic batch: ~1,400 simulated workflows of ~14 spans (about 20,000 spans,
//! each with ~10 tags), with some message loss and ping-pong loops so every
//! detector has work. Throughput is reported in spans (criterion "elements").
//!
//! - `decode/<format>`: decoding pre-encoded records of each wire format.
//! - `assembly`: the trace assembler alone, fed decoded spans, then closed.
//! - `analysis`: the analyzer on the closed traces.
//! - `pipeline/jaeger-proto`: decode → watermarks → assembly → analyses, in process.
//! - `pipeline/jaeger-proto-links`: the same, with one consumer span in ten
//!   linking 10 producer spans of earlier traces (batch consumers).
//! - `pipeline/otlp-proto`: the same spans as 50-span OTLP protobuf requests.
//!
//! Before criterion runs, a counting global allocator measures the bytes each
//! buffered span costs while its trace is open (span, span vectors, hash map,
//! timers): see `memory_per_buffered_span`. The design target is ≤ 160 bytes.
//! `memory_of_flows` measures the state that outlives a trace's close: bytes
//! per span of the closed-trace index (target ≤ 24) and per pending producer.

use criterion::{black_box, BatchSize, Criterion, SamplingMode, Throughput};
use poirot::analysis::{Analyzer, Anomaly, Assembled, DetectedAt, TraceAssembler};
use poirot::config::{Config, S3Behaviour};
use poirot::dataflow::{Context, Operator, SystemClock};
use poirot::decode::{self, jaeger_json, jaeger_proto, jaeger_ui, otlp, DecodeError, Format};
use poirot::model::{Interner, Span, SpanRef};
use poirot::runtime::{Input, Pipeline, PipelineConfig};
use poirot::source::simulator::{SimConfig, Simulator, EXTRA_TAGS};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------
// A counting allocator. It counts only while `COUNTING` is set, so the timed
// benchmarks pay one relaxed load per allocation and nothing else. The net
// count over a window is exactly "live bytes after − live bytes before",
// whenever the freed blocks were allocated.

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            NET_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            NET_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        if COUNTING.load(Ordering::Relaxed) {
            NET_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            NET_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Net bytes allocated while `f` runs.
fn net_allocated<R>(f: impl FnOnce() -> R) -> (R, isize) {
    NET_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    COUNTING.store(false, Ordering::SeqCst);
    (r, NET_BYTES.load(Ordering::SeqCst))
}

// ---------------------------------------------------------------------------
// The workload.

/// Workflows per batch: ~1,400 traces of ~14 spans ≈ 20,000 spans.
const TRACES: usize = 1_400;
/// 2026-01-01T00:00:00Z in µs.
const T0: i64 = 1_767_225_600_000_000;
/// Workflows start 50 ms apart (20 per second, `poirot simulate`'s default rate).
const INTERVAL_US: i64 = 50_000;
/// Spans per OTLP request, as `poirot simulate` writes them.
const OTLP_BATCH: usize = 50;

fn sim_config() -> SimConfig {
    SimConfig {
        s3: S3Behaviour::Const,
        message_loss_rate: 0.05,
        ping_pong_rate: 0.05,
        ..SimConfig::default()
    }
}

/// Simulated spans in the order tracers report them, and the names they use.
fn simulate(traces: usize, seed: u64) -> (Interner, Vec<Span>) {
    let mut names = Interner::new();
    let (spans, _expected) = Simulator::new(sim_config(), seed).batch(traces, T0, INTERVAL_US, &mut names);
    (names, spans)
}

/// The records a source would deliver for `spans` in `format`.
fn encode(format: Format, spans: &[Span], names: &Interner) -> Vec<Vec<u8>> {
    match format {
        Format::JaegerProto => spans.iter().map(|s| jaeger_proto::encode(s, names, &EXTRA_TAGS)).collect(),
        Format::JaegerJson => spans.iter().map(|s| jaeger_json::encode(s, names, &EXTRA_TAGS)).collect(),
        Format::JaegerUi => vec![jaeger_ui::encode(spans, names)],
        Format::OtlpProto => {
            spans.chunks(OTLP_BATCH).map(|c| otlp::encode_proto(c, names, &EXTRA_TAGS)).collect()
        }
        Format::OtlpJson => {
            spans.chunks(OTLP_BATCH).map(|c| otlp::encode_json(c, names, &EXTRA_TAGS)).collect()
        }
    }
}

/// Decodes every record, appending to `spans`; panics on a decode error (the
/// input is known good, so an error is a bug worth stopping the bench for).
fn decode_all(
    format: Format,
    records: &[Vec<u8>],
    names: &mut Interner,
    spans: &mut Vec<Span>,
    errors: &mut Vec<DecodeError>,
) {
    for r in records {
        decode::decode(format, r, names, spans, errors);
    }
    assert!(errors.is_empty(), "{format}: {} decode errors, first: {:?}", errors.len(), errors.first());
}

fn pipeline_config() -> PipelineConfig {
    poirot::cli::pipeline_config(&Config::default(), DetectedAt::TraceClose)
}

/// Assembles `spans` (no watermarks: every trace closes at the end). Assembly
/// reads no names, so it gets an empty interner.
fn assemble(spans: Vec<Span>) -> Vec<Assembled> {
    let mut assembler = TraceAssembler::new(pipeline_config().assembly);
    let mut names = Interner::new();
    let mut out = Vec::new();
    let mut ctx = Context::new(&mut names, &mut out);
    for s in spans {
        assembler.process_element(s, &mut ctx);
    }
    assembler.on_close(&mut ctx);
    out
}

fn new_analyzer() -> Analyzer {
    let c = pipeline_config();
    // The series limit is not reached here, so the overflow name is never used.
    Analyzer::new(c.analysis, c.detected_at, poirot::model::Sym::default())
}

// ---------------------------------------------------------------------------
// Memory per buffered span.

/// Feeds `n` spans of open traces (the inactivity gap is a century, so nothing
/// closes) into a pipeline and prints the live bytes they cost per span.
fn memory_per_buffered_span(n: usize) {
    // ~14.3 spans per workflow; simulate a few more and cut at n.
    let (_names, mut spans) = simulate(n / 13 + 1, 7);
    spans.truncate(n);
    let n = spans.len();
    let mut config = pipeline_config();
    config.assembly.inactivity_gap_us = 100 * 365 * 24 * 3600 * 1_000_000;
    config.assembly.max_buffered_spans = usize::MAX;

    let (pipeline, bytes) = net_allocated(|| {
        let mut p = Pipeline::new(config, Arc::new(SystemClock));
        // Cloning inside the window counts the heap part of a span (a spilled
        // reference list) too; the input vector itself stays outside.
        for s in &spans {
            p.push(Input::Span { partition: 0, span: s.clone() });
        }
        p
    });
    assert_eq!(pipeline.outputs().buffered_spans, n, "every span must stay buffered");
    let traces = pipeline.outputs().open_traces;
    eprintln!(
        "memory: {n} buffered spans in {traces} open traces ({:.1} spans/trace): \
         {bytes} bytes live = {:.1} bytes per buffered span (target <= 160; \
         size_of::<Span>() = {}, size_of::<SpanRef>() = {})",
        n as f64 / traces as f64,
        bytes as f64 / n as f64,
        std::mem::size_of::<Span>(),
        std::mem::size_of::<SpanRef>(),
    );
    drop(pipeline);
}

/// The closed-trace index and pending producers, measured by the allocator:
/// every simulated trace is indexed as it closes, and each of its producer spans
/// is made pending with the loss document it would become.
fn memory_of_flows(n: usize) {
    use poirot::analysis::flows::Evidence;
    use poirot::analysis::{detect, FlowConfig, Flows, TraceDag};
    let (mut names, mut spans) = simulate(n / 13 + 1, 9);
    spans.truncate(n);
    let mut traces: std::collections::BTreeMap<poirot::model::TraceId, Vec<Span>> = Default::default();
    for s in spans {
        traces.entry(s.trace_id).or_default().push(s);
    }
    let n: usize = traces.values().map(Vec::len).sum();
    let config = FlowConfig { max_closed_bytes: usize::MAX, ..FlowConfig::default() };
    let (flows, bytes) = net_allocated(|| {
        let mut f = Flows::new(config.clone(), &mut names);
        for (id, spans) in &traces {
            f.closed(*id, spans, T0, false);
        }
        f
    });
    eprintln!(
        "memory: closed-trace index of {} traces, {n} spans: {bytes} bytes live = {:.1} bytes per span \
         (target <= 24; accounted {:.1}; {} B per span + {} B per trace)",
        traces.len(),
        bytes as f64 / n as f64,
        flows.closed_bytes() as f64 / n as f64,
        poirot::analysis::flows::INDEXED_SPAN_BYTES,
        poirot::analysis::flows::INDEXED_TRACE_BYTES,
    );
    drop(flows);
    let pending = traces.values().flatten().filter(|s| s.kind == poirot::model::SpanKind::Producer).count();
    let mut empty = Interner::new();
    let mut f = Flows::new(config, &mut empty);
    let dags: Vec<(&Vec<Span>, TraceDag)> = traces.values().map(|s| (s, TraceDag::build(s))).collect();
    // The evidence is copied inside the window: what a pending producer holds.
    let ((), bytes) = net_allocated(|| {
        for (spans, dag) in &dags {
            for (i, _) in
                spans.iter().enumerate().filter(|(_, s)| s.kind == poirot::model::SpanKind::Producer)
            {
                let path = detect::causal_path(spans, dag, i as u32, 32);
                f.pend(Evidence { path, trace_spans: spans.len() as u64, closes_at: T0 });
            }
        }
    });
    assert_eq!(f.pending_producers(), pending);
    eprintln!(
        "memory: {pending} pending producers (each with the causal path its loss document shows): \
         {bytes} bytes live = {:.0} bytes per pending producer",
        bytes as f64 / pending as f64
    );
}

/// `spans` with one consumer span in ten linking (`follows_from`) 10 producer
/// spans of earlier traces, as batch consumers do.
fn with_links(mut spans: Vec<Span>) -> Vec<Span> {
    use poirot::model::{RefKind, SpanKind};
    let producers: Vec<(poirot::model::TraceId, poirot::model::SpanId)> =
        spans.iter().filter(|s| s.kind == SpanKind::Producer).map(|s| (s.trace_id, s.span_id)).collect();
    let mut consumers = 0usize;
    let mut next = 0usize;
    for s in spans.iter_mut().filter(|s| s.kind == SpanKind::Consumer) {
        consumers += 1;
        if consumers % 10 != 0 {
            continue;
        }
        for _ in 0..10 {
            let (trace_id, span_id) = producers[next % producers.len()];
            next += 1;
            if trace_id != s.trace_id {
                s.refs.push(SpanRef { trace_id, span_id, kind: RefKind::FollowsFrom });
            }
        }
    }
    spans
}

// ---------------------------------------------------------------------------
// Throughput.

fn bench_decode(c: &mut Criterion, names: &Interner, spans: &[Span]) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(spans.len() as u64));
    // Iterations of 10-150 ms: flat sampling keeps each group within its time.
    g.sampling_mode(SamplingMode::Flat);
    for format in Format::ALL {
        let records = encode(format, spans, names);
        let mut dnames = Interner::new();
        let mut out = Vec::with_capacity(spans.len());
        let mut errors = Vec::new();
        // Once untimed: a long-running pipeline has interned every name already.
        decode_all(format, &records, &mut dnames, &mut out, &mut errors);
        assert_eq!(out.len(), spans.len(), "{format} decoded a different number of spans");
        g.bench_function(format.name(), |b| {
            b.iter(|| {
                out.clear();
                decode_all(format, black_box(&records), &mut dnames, &mut out, &mut errors);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_assembly_and_analysis(c: &mut Criterion, names: &Interner, spans: &[Span]) {
    // The spans as the decoder hands them over, with the decoder's names.
    let records = encode(Format::JaegerProto, spans, names);
    let mut dnames = Interner::new();
    let mut decoded = Vec::with_capacity(spans.len());
    decode_all(Format::JaegerProto, &records, &mut dnames, &mut decoded, &mut Vec::new());
    let n = decoded.len() as u64;

    let mut g = c.benchmark_group("assembly");
    g.throughput(Throughput::Elements(n));
    g.bench_function("assembly", |b| b.iter_batched(|| decoded.clone(), assemble, BatchSize::LargeInput));
    g.finish();

    let mut g = c.benchmark_group("analysis");
    g.throughput(Throughput::Elements(n));
    let mut analyzer = new_analyzer();
    let mut anomalies: Vec<Anomaly> = Vec::new();
    // Once untimed, which also checks the batch gives the detectors work.
    let mut ctx = Context::new(&mut dnames, &mut anomalies);
    for t in assemble(decoded.clone()) {
        analyzer.process_element(t, &mut ctx);
    }
    assert!(!anomalies.is_empty(), "the batch has lost messages and loops to find");
    g.bench_function("analysis", |b| {
        b.iter_batched(
            || assemble(decoded.clone()),
            |traces| {
                anomalies.clear();
                let mut ctx = Context::new(&mut dnames, &mut anomalies);
                for t in traces {
                    analyzer.process_element(t, &mut ctx);
                }
                black_box(anomalies.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_pipeline(c: &mut Criterion, names: &Interner, spans: &[Span]) {
    let records = encode(Format::JaegerProto, spans, names);
    let otlp_records = encode(Format::OtlpProto, spans, names);
    let run_format = |format: Format, records: &[Vec<u8>]| {
        let mut p = Pipeline::new(pipeline_config(), Arc::new(SystemClock));
        for r in records {
            p.push(Input::Record { partition: 0, offset: None, format: Some(format), bytes: r });
        }
        p.push(Input::End);
        let anomalies = p.drain_anomalies().count();
        (p, anomalies)
    };
    let run = |records: &[Vec<u8>]| run_format(Format::JaegerProto, records);
    for (format, records) in [(Format::JaegerProto, &records), (Format::OtlpProto, &otlp_records)] {
        let (p, anomalies) = run_format(format, records);
        assert_eq!(p.outputs().input.spans, spans.len() as u64);
        assert_eq!(p.outputs().input.bad_total(), 0);
        assert!(anomalies > 0, "the batch has lost messages and loops to find");
    }

    let linked = with_links(spans.to_vec());
    let linked_records = encode(Format::JaegerProto, &linked, names);
    let (p, _) = run(&linked_records);
    let f = &p.outputs().flows.stats;
    assert!(f.links > 0 && f.links_resolved == f.links, "links: {f:?}");
    drop(p);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(spans.len() as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("jaeger-proto", |b| b.iter(|| black_box(run(black_box(&records)).1)));
    g.bench_function("jaeger-proto-links", |b| b.iter(|| black_box(run(black_box(&linked_records)).1)));
    // The same spans as 50-span OTLP requests (Jaeger v2's Kafka exporter's default encoding).
    g.bench_function("otlp-proto", |b| {
        b.iter(|| black_box(run_format(Format::OtlpProto, black_box(&otlp_records)).1))
    });
    g.finish();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test.
    let benching = std::env::args().any(|a| a == "--bench");
    memory_per_buffered_span(if benching { 200_000 } else { 10_000 });
    memory_of_flows(if benching { 200_000 } else { 10_000 });

    let traces = if benching { TRACES } else { 100 };
    let (names, spans) = simulate(traces, 1);
    eprintln!(
        "workload: {} traces, {} spans ({:.1} spans/trace), {} extra tags per span",
        traces,
        spans.len(),
        spans.len() as f64 / traces as f64,
        EXTRA_TAGS.len()
    );
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    bench_decode(&mut c, &names, &spans);
    bench_assembly_and_analysis(&mut c, &names, &spans);
    bench_pipeline(&mut c, &names, &spans);
    c.final_summary();
}
