//! `poirot run`: the main job. Consumes the Jaeger span topic in a consumer
//! group, runs the operator graph, serves the page and `/metrics`, sends
//! undecodable messages to the dead-letter topic, and (with `--out`) writes
//! anomalies and dependencies to files.

use crate::analysis::{Anomaly, DetectedAt};
use crate::config::Config;
use crate::dataflow::{Clock, SystemClock};
use crate::decode::{DecodeError, Format};
use crate::pipeline::Pipeline;
use crate::sink::elasticsearch::EsSink;
use crate::sink::live::{self, RecentAnomalies};
use crate::sink::neo4j::Neo4jSink;
use crate::sink::{files, web};
use crate::source::kafka::{KafkaRecord, KafkaSource, KafkaSourceConfig, SourceEvent};
use anyhow::Context as _;
use clap::Args;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
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

const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);
const FILES_EVERY: Duration = Duration::from_secs(5);
const GC_LAG: Duration = Duration::from_secs(10);

/// Undecodable messages, copied to `<topic>-dlq` with headers naming why and where from.
struct DeadLetters {
    producer: BaseProducer,
    topic: String,
    source_topic: String,
    sent: u64,
}

impl DeadLetters {
    fn new(
        brokers: &str,
        source_topic: &str,
        props: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers).set("client.id", "poirot-dlq");
        for (k, v) in props {
            cc.set(k, v);
        }
        Ok(DeadLetters {
            producer: cc.create().context("cannot create the dead-letter producer")?,
            topic: format!("{source_topic}-dlq"),
            source_topic: source_topic.to_owned(),
            sent: 0,
        })
    }

    fn send(&mut self, r: &KafkaRecord, e: &DecodeError) {
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "poirot.reason", value: Some(e.reason.as_str()) })
            .insert(Header { key: "poirot.detail", value: Some(e.detail.as_str()) })
            .insert(Header { key: "poirot.source.topic", value: Some(self.source_topic.as_str()) })
            .insert(Header { key: "poirot.source.partition", value: Some(partition.as_str()) })
            .insert(Header { key: "poirot.source.offset", value: Some(offset.as_str()) });
        let mut rec: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).payload(&r.payload[..]).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(&k[..]);
        }
        match self.producer.send(rec) {
            Ok(()) => self.sent += 1,
            Err((err, _)) => tracing::warn!("cannot queue a dead letter: {err}"),
        }
        self.producer.poll(Duration::ZERO);
    }

    fn flush(&self) {
        let _ = self.producer.flush(Duration::from_secs(10));
    }
}

/// Appends anomalies as they are found and rewrites the dependency files now and then.
struct FileSink {
    dir: PathBuf,
    /// Unbuffered: each anomaly is one whole-line write, so readers never see half a line.
    anomalies: std::fs::File,
}

impl FileSink {
    fn open(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(files::ANOMALIES);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(FileSink { dir, anomalies: f })
    }

    fn anomaly(&mut self, a: &Anomaly) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(a)?;
        line.push(b'\n');
        self.anomalies.write_all(&line)?;
        Ok(())
    }

    fn flush(&mut self, p: &Pipeline) -> anyhow::Result<()> {
        self.anomalies.flush()?;
        files::write_dependencies(&self.dir, p)?;
        Ok(())
    }
}

fn format_of(encoding: &str) -> Option<Format> {
    Format::from_name(encoding)
}

pub fn run(args: RunArgs, config: &Config) -> anyhow::Result<()> {
    let k = &config.kafka;
    let source_config = KafkaSourceConfig {
        brokers: args.brokers.clone().unwrap_or_else(|| k.brokers.clone()),
        topic: args.topic.clone().unwrap_or_else(|| k.topic.clone()),
        group: args.group.clone().unwrap_or_else(|| k.group.clone()),
        properties: k.properties.clone(),
    };
    let listen = args.listen.clone().unwrap_or_else(|| config.run.listen.clone());
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:9464"))?;
    let format = format_of(&k.encoding);
    let mut dlq = if k.dead_letter {
        Some(DeadLetters::new(&source_config.brokers, &source_config.topic, &k.properties)?)
    } else {
        None
    };
    let mut file_sink = args.out.clone().map(FileSink::open).transpose()?;
    let mut neo4j = match config.neo4j.sink_config()? {
        Some(c) => Some(
            Neo4jSink::connect(&c, &source_config.group, &source_config.topic)
                .with_context(|| format!("cannot set up Neo4j at {}", c.uri))?,
        ),
        None => None,
    };
    let mut es = match config.elasticsearch.sink_config()? {
        Some(c) => {
            Some(EsSink::connect(&c).with_context(|| format!("cannot set up Elasticsearch at {}", c.url))?)
        }
        None => None,
    };
    let mut source = KafkaSource::start(&source_config)
        .with_context(|| format!("cannot consume {} from {}", source_config.topic, source_config.brokers))?;

    let shared = web::shared("run");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(tokio::sync::Notify::new());
    let server = {
        let (shared, done, stop) = (shared.clone(), done.clone(), stop.clone());
        let topic = source_config.topic.clone();
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let until = web::Until { duration: None, pipeline_done: done };
                let r = web::serve(addr, shared, until, |bound| {
                    tracing::info!(
                        "poirot run: consuming {topic}; page http://{bound}/  metrics http://{bound}/metrics"
                    );
                });
                stop.store(true, Ordering::Relaxed);
                r
            })
            .context("cannot start the http thread")?
    };

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut pipeline = Pipeline::new(super::pipeline_config(config, DetectedAt::Clock(clock.clone())), clock);
    if neo4j.is_some() {
        pipeline.enable_deltas();
    }
    // Finished-trace records may be deleted below offsets published this long ago
    // (the consumer thread commits published offsets every second).
    let mut gc_offsets: Vec<(u32, i64)> = Vec::new();
    let mut last_gc = Instant::now();
    let mut recent = RecentAnomalies::default();
    let mut assigned: BTreeSet<u32> = BTreeSet::new();
    let (mut last_snapshot, mut last_files) = (Instant::now(), Instant::now());
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        match source.events.recv_timeout(Duration::from_millis(100)) {
            Ok(SourceEvent::Batch(records)) => {
                for r in &records {
                    let outcome = pipeline.push_record_at(r.partition, r.offset, format, &r.payload);
                    if let (0, Some(e), Some(d)) = (outcome.spans, &outcome.error, dlq.as_mut()) {
                        d.send(r, e);
                    }
                }
            }
            Ok(SourceEvent::Assigned(ps)) => {
                tracing::info!("partitions assigned: {ps:?}");
                for &p in &ps {
                    pipeline.assign(p);
                    if let Some(n) = &neo4j {
                        // Spans of traces a previous owner already counted are dropped when read again.
                        let finished = n.finished_traces(p).with_context(|| format!("partition {p}"))?;
                        pipeline.skip_finished(p, finished);
                    }
                }
                assigned.extend(ps);
            }
            Ok(SourceEvent::Revoked { partitions, done }) => {
                tracing::info!("partitions revoked: {partitions:?}");
                // Everything closed so far was written in earlier rounds; publish the
                // final offsets of these partitions, then drop their open traces.
                if let Ok(mut m) = source.committable.lock() {
                    for &p in &partitions {
                        if let Some(o) = pipeline.committable(p) {
                            m.insert(p, o);
                        }
                    }
                }
                for p in partitions {
                    pipeline.revoke(p);
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
        pipeline.tick();
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
            if es.has_pending() && !es.flush(&stop) {
                break;
            }
        }
        if let Some(n) = neo4j.as_mut() {
            let (delta, finished) = pipeline.take_finished();
            let gc = if last_gc.elapsed() >= GC_LAG { std::mem::take(&mut gc_offsets) } else { Vec::new() };
            if (!delta.is_empty() || !finished.is_empty() || !gc.is_empty())
                && !n.write(&delta, &pipeline.names, &finished, &gc, &stop)
            {
                break;
            }
            if last_gc.elapsed() >= GC_LAG {
                gc_offsets = assigned.iter().filter_map(|&p| Some((p, pipeline.committable(p)?))).collect();
                last_gc = Instant::now();
            }
        }
        // What open traces no longer need may be committed (after the file sink wrote it).
        if let Ok(mut m) = source.committable.lock() {
            for &p in &assigned {
                if let Some(o) = pipeline.committable(p) {
                    m.insert(p, o);
                }
            }
        }
        if last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            let mut snap = live::take("run", &pipeline, &recent);
            append_source_metrics(&mut snap.metrics, &source, dlq.as_ref());
            if let Some(es) = &es {
                append_es_metrics(&mut snap.metrics, es);
            }
            if let Some(n) = &neo4j {
                append_neo4j_metrics(&mut snap.metrics, n, pipeline.input.replayed_spans);
            }
            web::publish(&shared, snap);
            last_snapshot = Instant::now();
        }
        if last_files.elapsed() >= FILES_EVERY {
            if let Some(f) = file_sink.as_mut() {
                if let Err(e) = f.flush(&pipeline) {
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
        f.flush(&pipeline)?;
    }
    done.notify_one();
    match server.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the http thread panicked"),
    }
    tracing::info!("poirot run stopped");
    result
}

fn append_source_metrics(out: &mut String, source: &KafkaSource, dlq: Option<&DeadLetters>) {
    let _ = writeln!(
        out,
        "# HELP poirot_kafka_committable_offset Offset poirot allows to commit, per partition."
    );
    let _ = writeln!(out, "# TYPE poirot_kafka_committable_offset gauge");
    if let Ok(m) = source.committable.lock() {
        for (p, o) in m.iter() {
            let _ = writeln!(out, "poirot_kafka_committable_offset{{partition=\"{p}\"}} {o}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP poirot_kafka_consumer_lag Messages behind the end of the partition (librdkafka statistics, every 5 s)."
    );
    let _ = writeln!(out, "# TYPE poirot_kafka_consumer_lag gauge");
    if let Ok(m) = source.lag.lock() {
        for (p, l) in m.iter() {
            let _ = writeln!(out, "poirot_kafka_consumer_lag{{partition=\"{p}\"}} {l}");
        }
    }
    let _ =
        writeln!(out, "# HELP poirot_dead_letters_total Undecodable messages sent to the dead-letter topic.");
    let _ = writeln!(out, "# TYPE poirot_dead_letters_total counter");
    let _ = writeln!(out, "poirot_dead_letters_total {}", dlq.map_or(0, |d| d.sent));
}

fn append_es_metrics(out: &mut String, es: &EsSink) {
    let s = es.stats;
    for (name, help, v) in [
        ("poirot_es_documents_indexed_total", "Anomaly documents Elasticsearch acknowledged.", s.indexed),
        (
            "poirot_es_documents_rejected_total",
            "Anomaly documents Elasticsearch refused for good.",
            s.rejected,
        ),
        ("poirot_es_retries_total", "Bulk requests retried after 429, 5xx or a connection error.", s.retries),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {v}");
    }
}

fn append_neo4j_metrics(out: &mut String, n: &Neo4jSink, replayed: u64) {
    let s = n.stats;
    for (name, help, v) in [
        ("poirot_neo4j_writes_total", "Neo4j transactions committed.", s.writes),
        ("poirot_neo4j_retries_total", "Neo4j transactions retried.", s.retries),
        ("poirot_neo4j_finished_traces_total", "Traces whose edges Neo4j counted.", s.finished_traces),
        ("poirot_replayed_spans_total", "Spans of already counted traces dropped when read again.", replayed),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {v}");
    }
}
