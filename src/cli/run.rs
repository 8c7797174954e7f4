//! `poirot run`: the main job. Consumes the Jaeger span topic in a consumer
//! group, runs the operator graph, serves the page and `/metrics`, sends
//! undecodable messages to the dead-letter topic, re-keys unkeyed input through
//! the repartition topic, and (with `--out`) writes anomalies and dependencies
//! to files.

use crate::analysis::DetectedAt;
use crate::config::Config;
use crate::dataflow::{Clock, SystemClock};
use crate::decode::Format;
use crate::runtime::exchange::ThroughTopic;
use crate::runtime::{Driver, Exchange, InProcess, Pipeline};
use crate::sink::dead_letters::DeadLetters;
use crate::sink::elasticsearch::{EsSink, JaegerDependencies};
use crate::sink::live::LivePage;
use crate::sink::log::LogAnomalies;
use crate::sink::neo4j::Neo4jSink;
use crate::sink::{files, web, Sink};
use crate::source::kafka::{KafkaSource, KafkaSourceConfig};
use crate::source::repartition::{self, Mode, Rekeyer};
use crate::telemetry::health::{Component, Health};
use crate::telemetry::process::ProcessMetrics;
use crate::telemetry::SelfTracing;
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// The consumer's librdkafka properties. With `repartition = "auto"`, traces
/// keyed by the input's producer live in input partition k, and links to them
/// travel through repartition partition k: the range assignor gives both to the
/// same member (the topics have the same partition count), where the default
/// cooperative-sticky one would not. `[kafka.properties]` may choose otherwise.
fn consumer_properties(
    mode: Mode,
    properties: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    const STRATEGY: &str = "partition.assignment.strategy";
    let mut p = properties.clone();
    if mode == Mode::Auto {
        let strategy = p.entry(STRATEGY.to_owned()).or_insert_with(|| "range".to_owned());
        if strategy.as_str() != "range" {
            tracing::warn!(
                "{STRATEGY} = {strategy:?} with kafka.repartition = \"auto\": links between traces of keyed \
                 input reach the owner of the trace they name only under \"range\"; others stay unresolved"
            );
        }
    }
    p
}

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
    let mut formats = vec![k.encoding.format()];
    let mut rekeyer = None;
    if mode != Mode::Never {
        let internal = repartition::topic_name(&group);
        let partitions = repartition::ensure_topic(&brokers, &k.properties, &topic, &internal)
            .with_context(|| format!("cannot set up the repartition topic {internal}"))?;
        let idle_us = config.assembly.idle_timeout.as_micros() as i64;
        let window = config.assembly.inactivity_gap + config.assembly.out_of_orderness;
        let drift = repartition::alignment::Drift::for_window(window.as_micros() as i64);
        rekeyer = Some(Rekeyer::new(&brokers, &k.properties, &internal, partitions, idle_us, drift)?);
        topics.push(internal);
        // Re-keyed spans are always Jaeger protobuf, whatever the input's encoding.
        formats.push(Some(Format::JaegerProto));
    }
    let properties = consumer_properties(mode, &k.properties);
    let source_config = KafkaSourceConfig { brokers, topics, group, properties, formats };
    let dlq = if k.dead_letter {
        Some(
            DeadLetters::new(&source_config.brokers, &source_config.topics, &k.properties, &process)
                .context("cannot create the dead-letter producer")?,
        )
    } else {
        None
    };
    let file_sink = args.out.clone().map(files::LiveFiles::open).transpose()?;
    let neo4j = match neo4j_config {
        Some(c) => Some(
            Neo4jSink::connect(&c, &source_config.group, &topic, &process, &health, &stop)
                .with_context(|| format!("cannot set up Neo4j at {}", c.uri))?,
        ),
        None => None,
    };
    let es = match es_config {
        Some(mut c) => Some({
            if config.jaeger_dependencies.enabled {
                c.jaeger = Some(JaegerDependencies::new(&config.jaeger_dependencies, &source_config.group));
            }

            EsSink::connect(&c, &process, &health, &stop)
                .with_context(|| format!("cannot set up Elasticsearch at {}", c.url))?
        }),
        None => None,
    };
    let mut source = KafkaSource::start(&source_config, process.clone(), health.clone())
        .with_context(|| format!("cannot consume {topic} from {}", source_config.brokers))?;

    // Documents are stamped with wall time; idleness is measured on the source's
    // reading clock, which stands still while poirot cannot read (a sink that
    // blocks the pipeline, unreachable brokers, a rebalance).
    let wall: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut pipeline = Pipeline::new(
        super::pipeline_config(config, DetectedAt::Clock(wall)),
        Arc::new(source.clock.clone()),
    );
    if !config.self_tracing.endpoint.is_empty() {
        pipeline.ignore_service(&config.self_tracing.service_name);
    }
    if config.jaeger_dependencies.enabled {
        pipeline.enable_dependency_buckets(config.jaeger_dependencies.bucket.as_micros() as i64);
    }
    let exchange: Box<dyn Exchange> = match rekeyer {
        Some(rk) => Box::new(ThroughTopic::new(rk, mode, process.repartitioned_spans.clone(), &mut pipeline)),
        None => Box::new(InProcess),
    };
    // Dead letters first: they never wait. Then the log and the page, then the
    // sinks that acknowledge writes.
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    sinks.extend(dlq.map(|d| Box::new(d) as Box<dyn Sink>));
    sinks.push(Box::new(LogAnomalies::default()));
    let page = shared.clone();
    sinks.push(Box::new(
        LivePage::new("run", move |snapshot| web::publish(&page, snapshot))
            .with_jaeger_url(&config.ui.jaeger_url),
    ));
    sinks.extend(file_sink.map(|f| Box::new(f) as Box<dyn Sink>));
    sinks.extend(es.map(|e| Box::new(e) as Box<dyn Sink>));
    sinks.extend(neo4j.map(|n| Box::new(n) as Box<dyn Sink>));
    let mut driver = Driver::new(pipeline, exchange, sinks);
    // Open traces are not emitted half-done when poirot stops: their offsets stay
    // uncommitted and the next owner reads them again.
    let result = driver.run(&mut source, &stop);
    done.notify_one();
    match server.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the http thread panicked"),
    }
    self_tracing.shutdown();
    tracing::info!("poirot run stopped");
    result.map(|_| ()).map_err(anyhow::Error::from)
}
