//! `poirot run`: the main job. Consumes the Jaeger span topic in a consumer
//! group, runs the operator graph, serves the page and `/metrics`, sends
//! undecodable messages to the dead-letter topic, re-keys unkeyed input through
//! the repartition topic, and (with `--out`) writes anomalies and dependencies
//! to files.

use crate::analysis::DetectedAt;
use crate::config::Config;
use crate::dataflow::{Clock, SystemClock};
use crate::runtime::{Input, Pipeline};
use crate::sink::dead_letters::DeadLetters;
use crate::sink::elasticsearch::EsSink;
use crate::sink::live::{self, RecentAnomalies};
use crate::sink::neo4j::Neo4jSink;
use crate::sink::{files, web};
use crate::source::kafka::{split_id, Assignment, Connection, KafkaSource, KafkaSourceConfig, SourceEvent};
use crate::source::repartition::{self, Mode, Rekeyer};
use crate::telemetry::health::{Component, Health};
use crate::telemetry::process::ProcessMetrics;
use crate::telemetry::{work, SelfTracing};
use anyhow::Context as _;
use clap::Args;
use opentelemetry::KeyValue;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kafka bootstrap servers (overrides kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Topic Jaeger writes spans to (overrides kafka.topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Consumer group (overrides kafka.group).
    #[arg(long)]
    pub group: Option<String>,
    /// Address of the page, /metrics and /healthz (overrides run.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Also write anomalies.ndjson (appended as found) and the dependency files here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Index of the span topic among the topics read.
const INPUT: usize = 0;
/// Index of the repartition topic.
const REPARTITIONED: usize = 1;
const FILES_EVERY: Duration = Duration::from_secs(5);
const GC_LAG: Duration = Duration::from_secs(10);

pub fn run(args: RunArgs, config: &Config) -> anyhow::Result<()> {
    let k = &config.kafka;
    let brokers = args.brokers.clone().unwrap_or_else(|| k.brokers.clone());
    let topic = args.topic.clone().unwrap_or_else(|| k.topic.clone());
    let group = args.group.clone().unwrap_or_else(|| k.group.clone());
    let mode = k.repartition;
    let security = crate::sink::web_security::WebSecurity::from_section(&config.run)?;
    // Secrets and certificates of the sinks are read now: a missing file ends poirot
    // with one line naming its key before anything connects.
    let neo4j_config = crate::sink::neo4j::Neo4jConfig::from_section(&config.neo4j)?;
    let es_config = crate::sink::elasticsearch::EsConfig::from_section(&config.elasticsearch)?;
    let listen = args.listen.clone().unwrap_or_else(|| config.run.listen.clone());
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:9464"))?;
    let self_tracing = SelfTracing::start(&config.self_tracing)?;
    let process = ProcessMetrics::new();
    // The page, /metrics, /healthz and /readyz answer from the start: while poirot
    // waits for Kafka or a sink, /readyz says which one.
    let health = Health::new();
    health.register(Component::Kafka);
    let shared = web::shared("run", process.clone(), health.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(tokio::sync::Notify::new());
    let server = {
        let (shared, done, stop) = (shared.clone(), done.clone(), stop.clone());
        let topic = topic.clone();
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let until = web::Until { duration: None, pipeline_done: done };
                let scheme = security.scheme();
                let r = web::serve(addr, shared, security, until, |bound| {
                    tracing::info!(
                        "poirot run: consuming {topic}; page {scheme}://{bound}/  metrics {scheme}://{bound}/metrics"
                    );
                });
                stop.store(true, Ordering::Relaxed);
                r
            })
            .context("cannot start the http thread")?
    };
    // Before anything uses Kafka: wrong credentials or TLS end poirot with one line naming
    // them; unreachable brokers are waited for (backoff up to 30 s, one log line per try).
    crate::source::kafka_check::startup_check(&brokers, &k.properties)?;
    let mut topics = vec![topic.clone()];
    let mut rekeyer = None;
    if mode != Mode::Never {
        let internal = repartition::topic_name(&group);
        let partitions = repartition::ensure_topic(&brokers, &k.properties, &topic, &internal)
            .with_context(|| format!("cannot set up the repartition topic {internal}"))?;
        let idle_us = config.assembly.idle_timeout.as_micros() as i64;
        rekeyer = Some(Rekeyer::new(&brokers, &k.properties, &internal, partitions, idle_us)?);
        topics.push(internal);
    }
    let source_config = KafkaSourceConfig { brokers, topics, group, properties: k.properties.clone() };
    let format = k.encoding.format();
    let mut dlq = if k.dead_letter {
        Some(
            DeadLetters::new(&source_config.brokers, &source_config.topics, &k.properties, &process)
                .context("cannot create the dead-letter producer")?,
        )
    } else {
        None
    };
    let mut file_sink = args.out.clone().map(files::LiveFiles::open).transpose()?;
    let mut neo4j = match neo4j_config {
        Some(c) => Some(
            Neo4jSink::connect(&c, &source_config.group, &topic, &process, &health, &stop)
                .with_context(|| format!("cannot set up Neo4j at {}", c.uri))?,
        ),
        None => None,
    };
    let mut es = match es_config {
        Some(c) => Some(
            EsSink::connect(&c, &process, &health, &stop)
                .with_context(|| format!("cannot set up Elasticsearch at {}", c.url))?,
        ),
        None => None,
    };
    let mut source = KafkaSource::start(&source_config, process.clone())
        .with_context(|| format!("cannot consume {topic} from {}", source_config.brokers))?;

    // Documents are stamped with wall time; idleness is measured on the source's
    // reading clock, which stands still while poirot cannot read (a sink that
    // blocks the pipeline, unreachable brokers, a rebalance).
    let wall: Arc<dyn Clock> = Arc::new(SystemClock);
    let reading = source.clock.clone();
    let mut pipeline =
        Pipeline::new(super::pipeline_config(config, DetectedAt::Clock(wall)), Arc::new(reading.clone()));
    if neo4j.is_some() {
        pipeline.enable_deltas();
    }
    if !config.self_tracing.endpoint.is_empty() {
        pipeline.ignore_service(&config.self_tracing.service_name);
    }
    // Finished-trace records may be deleted below offsets published this long ago
    // (the consumer thread commits published offsets every second).
    let mut gc_offsets: Vec<(u32, i64)> = Vec::new();
    let mut last_gc = Instant::now();
    let mut recent = RecentAnomalies::default();
    let mut assigned: BTreeMap<u32, Assignment> = BTreeMap::new();
    let mut spans = Vec::new();
    let (mut last_snapshot, mut last_files) = (Instant::now(), Instant::now());
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        match source.events.recv_timeout(Duration::from_millis(100)) {
            Ok(SourceEvent::Batch(records)) => {
                let now = reading.now_us();
                for r in &records {
                    let outcome = match rekeyer.as_mut().filter(|_| r.topic == INPUT) {
                        _ if r.topic == REPARTITIONED => {
                            if let Some((producer, event_time)) = r.watermark {
                                pipeline.push(Input::UpstreamWatermark {
                                    partition: r.partition,
                                    offset: r.offset,
                                    producer,
                                    event_time,
                                });
                                continue;
                            }
                            // Always Jaeger protobuf, whatever the input's encoding.
                            let outcome = pipeline.decode_shuffled(&r.payload, &mut spans);
                            pipeline.push(Input::Shuffled {
                                partition: r.partition,
                                offset: r.offset,
                                spans: &mut spans,
                            });
                            outcome
                        }
                        // Input that may need re-keying: decode, then decide.
                        Some(rk) => {
                            let outcome = pipeline.decode(format, &r.payload, &mut spans);
                            if mode.rekeys(r.key.as_deref(), &spans) {
                                rk.send(&spans, pipeline.names(), r.partition, now, &stop);
                                process.repartitioned_spans.inc_by(spans.len() as u64);
                                spans.clear();
                                pipeline.push(Input::PassedOn { partition: r.partition, offset: r.offset });
                            } else {
                                rk.keyed(r.partition);
                                pipeline.push(Input::Spans {
                                    partition: r.partition,
                                    offset: Some(r.offset),
                                    spans: &mut spans,
                                });
                            }
                            outcome
                        }
                        None => pipeline.push(Input::Record {
                            partition: r.partition,
                            offset: Some(r.offset),
                            format,
                            bytes: &r.payload,
                        }),
                    };
                    if let (0, Some(e), Some(d)) = (outcome.spans, &outcome.error, dlq.as_mut()) {
                        d.send(r, e);
                    }
                }
            }
            Ok(SourceEvent::Assigned { partitions: ps, assignment }) => {
                tracing::info!("partitions assigned: {ps:?}");
                for &p in &ps {
                    // With every input message re-keyed, input partitions carry no
                    // event time and must not hold the watermark back. Repartition-topic
                    // partitions hold it until their producers' watermark records arrive
                    // (every producer announces itself when it is assigned input).
                    // Spans of traces this process finished before the partition was
                    // taken away are dropped when read again; so are those a previous
                    // owner recorded in Neo4j.
                    let topic = split_id(p).0;
                    if !(mode == Mode::Always && topic == INPUT) {
                        pipeline.push(Input::Assigned { partition: p, gated: true });
                    }
                    if let (Some(rk), INPUT) = (rekeyer.as_mut(), topic) {
                        rk.assigned(p, reading.now_us());
                    }
                    if let Some(n) = &neo4j {
                        let finished =
                            n.finished_traces(p, &stop).with_context(|| format!("partition {p}"))?;
                        if let Some(last) = finished.iter().map(|&(_, o)| o).max() {
                            tracing::info!(
                                "partition {p}: {} traces finished by an earlier owner (up to offset {last}) are dropped when read again",
                                finished.len()
                            );
                        }
                        pipeline.skip_finished(p, finished);
                    }
                }
                assigned.extend(ps.into_iter().map(|p| (p, assignment)));
            }
            Ok(SourceEvent::AtEnd(ps)) => {
                for p in ps {
                    pipeline.push(Input::AtEnd(p));
                }
            }
            Ok(SourceEvent::Revoked { partitions, done }) => {
                tracing::info!("partitions revoked: {partitions:?}");
                let _work =
                    work("kafka.revoke", vec![KeyValue::new("partitions", format!("{partitions:?}"))]);
                // Everything closed so far was written in earlier rounds; publish the
                // final offsets of these partitions (input ones only once their re-keyed
                // spans are acknowledged), then drop their open traces.
                let acked = rekeyed_acked(rekeyer.as_mut()).unwrap_or(false);
                let revoked = partitions.iter().filter_map(|p| Some((*p, *assigned.get(p)?)));
                publish_committable(&source, &pipeline, revoked, acked);
                for p in partitions {
                    if let Some(rk) = rekeyer.as_mut() {
                        rk.forget(p);
                    }
                    pipeline.push(Input::Revoked(p));
                    assigned.remove(&p);
                }
                let _ = done.send(());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                result = Err(anyhow::anyhow!("the kafka consumer stopped"));
                break;
            }
        }
        match source.connection() {
            Connection::Up => health.ok(Component::Kafka),
            Connection::Starting => {}
            Connection::Unreachable { reason } => health.failing(
                Component::Kafka,
                format!("cannot reach kafka at {}: {reason}", source_config.brokers),
            ),
            Connection::Refused { reason } => {
                let line = format!(
                    "kafka at {} refused poirot (authentication or TLS): {reason}",
                    source_config.brokers
                );
                health.failing(Component::Kafka, line.clone());
                result = Err(anyhow::anyhow!(line));
                break;
            }
        }
        pipeline.push(Input::Tick);
        if let Some(rk) = rekeyer.as_mut() {
            // Also when no input came: readers learn this process's final progress promptly.
            rk.send_watermarks(reading.now_us());
        }
        for a in pipeline.drain_anomalies() {
            tracing::info!(kind = %a.kind, trace_id = %a.trace_id, "{}", a.summary);
            if let Some(f) = file_sink.as_mut() {
                if let Err(e) = f.anomaly(&a) {
                    tracing::warn!("{e:#}");
                }
            }
            if let Some(es) = es.as_mut() {
                es.push(a.clone());
            }
            recent.push(a);
        }
        // Sink writes are acknowledged before the offsets behind them are committed;
        // while Elasticsearch is down this waits, and Kafka polling waits with it.
        if let Some(es) = es.as_mut() {
            if es.has_pending() {
                let mut w = work("elasticsearch.bulk", vec![KeyValue::new("documents", es.pending() as i64)]);
                match es.flush(&stop) {
                    Ok(true) => {}
                    Ok(false) => {
                        w.fail("stopped with documents pending");
                        break;
                    }
                    Err(e) => {
                        w.fail("refused");
                        result = Err(e.into());
                        break;
                    }
                }
            }
        }
        if let Some(n) = neo4j.as_mut() {
            let (delta, finished) = pipeline.take_finished();
            let gc = if last_gc.elapsed() >= GC_LAG { std::mem::take(&mut gc_offsets) } else { Vec::new() };
            if !delta.is_empty() || !finished.is_empty() || !gc.is_empty() {
                let mut w = work(
                    "neo4j.write",
                    vec![
                        KeyValue::new("edges", delta.services.len() as i64),
                        KeyValue::new("finished_traces", finished.len() as i64),
                    ],
                );
                match n.write(&delta, pipeline.names(), &finished, &gc, &stop) {
                    Ok(true) => {}
                    Ok(false) => {
                        w.fail("stopped before the write was acknowledged");
                        break;
                    }
                    Err(e) => {
                        w.fail("refused");
                        result = Err(e.into());
                        break;
                    }
                }
            }
        }
        if last_gc.elapsed() >= GC_LAG {
            // Only below what the coordinator acknowledged: a commit that failed
            // (Kafka down, a rebalance) means those spans are read again, and their
            // records must still be there to drop them.
            gc_offsets = source
                .committed
                .lock()
                .map(|m| m.iter().filter(|(p, _)| assigned.contains_key(p)).map(|(&p, &o)| (p, o)).collect())
                .unwrap_or_default();
            for &(p, o) in &gc_offsets {
                pipeline.push(Input::Committed { partition: p, offset: o });
            }
            if neo4j.is_none() {
                gc_offsets.clear();
            }
            last_gc = Instant::now();
        }
        // What open traces no longer need may be committed (after the file sink wrote
        // it, and for re-keyed input after the repartition topic acknowledged it).
        match rekeyed_acked(rekeyer.as_mut()) {
            Ok(acked) => {
                publish_committable(&source, &pipeline, assigned.iter().map(|(&p, &a)| (p, a)), acked)
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        if last_snapshot.elapsed() >= live::SNAPSHOT_EVERY {
            web::publish(&shared, live::take("run", &pipeline.outputs(), &recent));
            last_snapshot = Instant::now();
        }
        if last_files.elapsed() >= FILES_EVERY {
            if let Some(f) = file_sink.as_mut() {
                if let Err(e) = f.flush(&pipeline.outputs()) {
                    tracing::warn!("{e:#}");
                }
            }
            last_files = Instant::now();
        }
    }
    // Open traces are not emitted half-done: their offsets stay uncommitted and the
    // next owner re-reads them.
    source.stop();
    if let Some(d) = &dlq {
        d.flush();
    }
    if let Some(f) = file_sink.as_mut() {
        f.flush(&pipeline.outputs())?;
    }
    done.notify_one();
    match server.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the http thread panicked"),
    }
    self_tracing.shutdown();
    tracing::info!("poirot run stopped");
    result
}

/// Flushes the repartition producer: true when every re-keyed span is acknowledged
/// (always without repartitioning), an error when a delivery failed for good.
fn rekeyed_acked(rekeyer: Option<&mut Rekeyer>) -> anyhow::Result<bool> {
    let Some(rk) = rekeyer else { return Ok(true) };
    if !rk.has_unflushed() && !rk.failed() {
        return Ok(true);
    }
    let mut w = work("repartition.flush", Vec::new());
    let acked = rk.flush();
    if rk.failed() {
        w.fail("a delivery failed for good");
        anyhow::bail!(
            "spans could not be written to the repartition topic: poirot stops, the input is re-read"
        );
    }
    if !acked {
        w.fail("not acknowledged yet");
    }
    Ok(acked)
}

/// Publishes the offsets `pipeline` no longer needs for `partitions` (each under
/// the assignment that granted it); input partitions only when their re-keyed
/// spans are `acked`.
fn publish_committable(
    source: &KafkaSource,
    pipeline: &Pipeline,
    partitions: impl Iterator<Item = (u32, Assignment)>,
    acked: bool,
) {
    for (p, a) in partitions.filter(|&(p, _)| acked || split_id(p).0 != INPUT) {
        if let Some(o) = pipeline.committable(p) {
            source.publish(p, a, o);
        }
    }
}
