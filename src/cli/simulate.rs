//! `poirot simulate`: the demo pipeline's traces, written to a file in any format.
#![allow(clippy::print_stdout)]

use crate::config::{Config, S3Behaviour};
use crate::decode::{jaeger_json, jaeger_proto, jaeger_ui, otlp, Format};
use crate::model::{Interner, Span};
use crate::source::file::write_delimited;
use crate::source::kafka_check;
use crate::source::simulator::{SimConfig, Simulator, EXTRA_TAGS};
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Workflows (traces) to simulate.
    #[arg(long, default_value_t = 100)]
    pub traces: usize,
    /// Output format: jaeger-proto, jaeger-json, jaeger-ui, otlp-proto or otlp-json.
    #[arg(long, default_value = "jaeger-proto", value_parser = parse_format)]
    pub format: Format,
    /// File to write (framed as `poirot replay` reads it).
    #[arg(long, value_name = "FILE", required_unless_present = "brokers")]
    pub out: Option<PathBuf>,
    /// Produce to Kafka instead: one message per span (jaeger-proto, jaeger-json) keyed by
    /// trace id as the Jaeger collector does, or 50-span OTLP requests without a key.
    /// The client settings (TLS, SASL) are `[kafka.properties]` of the configuration.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Topic to produce to, with --brokers.
    #[arg(long, default_value = "jaeger-spans")]
    pub topic: String,
    /// Also write the anomalies the traces must produce, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub expected: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Workflows started per second of event time.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// S3 step: CONST, PROBABILISTIC or ERROR (the sandbox result is lost).
    #[arg(long, default_value = "CONST", value_parser = parse_s3)]
    pub s3: S3Behaviour,
    /// Probability that a workflow's SAMPLE_CLASSIFIED message is lost.
    #[arg(long, default_value_t = 0.0)]
    pub loss_rate: f64,
    /// Probability that Reporter and Classificator ping-pong (a recursive chain).
    #[arg(long, default_value_t = 0.0)]
    pub loop_rate: f64,
    /// Probability that the Reporter stores findings one INSERT at a time (N+1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub n_plus_one_rate: f64,
    /// An Archiver batch consumer takes every N reports through links from a
    /// trace of its own (0: no archiving): message flows across traces.
    #[arg(long, default_value_t = 0)]
    pub archive_every: usize,
    /// How long after a batch's last report the Archiver takes it, e.g. 500ms or 60s.
    #[arg(long, default_value = "500ms", value_parser = parse_delay)]
    pub archive_delay: std::time::Duration,
    /// Event time of the first workflow (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub start: String,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::from_name(s).ok_or_else(|| format!("unknown format {s:?}"))
}

fn parse_delay(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration like 500ms or 60s"))
}

fn parse_s3(s: &str) -> Result<S3Behaviour, String> {
    S3Behaviour::parse(s).ok_or_else(|| format!("{s:?} is not CONST, PROBABILISTIC or ERROR"))
}

/// Spans per OTLP request: a collector batches spans of many traces together.
const OTLP_BATCH: usize = 50;

/// Encodes spans in `format`, framed for a file.
pub fn encode_file(format: Format, spans: &[Span], names: &Interner) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        Format::JaegerProto => {
            for s in spans {
                write_delimited(&mut out, &jaeger_proto::encode(s, names, &EXTRA_TAGS));
            }
        }
        Format::JaegerJson => {
            for s in spans {
                out.extend(jaeger_json::encode(s, names, &EXTRA_TAGS));
                out.push(b'\n');
            }
        }
        Format::JaegerUi => out = jaeger_ui::encode(spans, names),
        Format::OtlpProto => {
            for chunk in spans.chunks(OTLP_BATCH) {
                write_delimited(&mut out, &otlp::encode_proto(chunk, names, &EXTRA_TAGS));
            }
        }
        Format::OtlpJson => {
            for chunk in spans.chunks(OTLP_BATCH) {
                out.extend(otlp::encode_json(chunk, names, &EXTRA_TAGS));
                out.push(b'\n');
            }
        }
    }
    out
}

/// Produces spans to Kafka as a Jaeger collector would, and waits until all are delivered.
fn produce(
    brokers: &str,
    properties: &std::collections::BTreeMap<String, String>,
    topic: &str,
    format: Format,
    spans: &[Span],
    names: &Interner,
) -> anyhow::Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let mut cc = rdkafka::ClientConfig::new();
    // Idempotent: a retried batch neither repeats nor overtakes spans, so what is
    // expected is exactly what was written.
    cc.set("bootstrap.servers", brokers)
        .set("client.id", "poirot-simulate")
        .set("linger.ms", "5")
        .set("enable.idempotence", "true");
    for (k, v) in properties {
        cc.set(k, v);
    }
    let producer: BaseProducer = cc.create().context("cannot create a Kafka producer")?;
    let progress = progress_bar(spans.len() as u64, "spans produced");
    let send = |key: Option<String>, payload: Vec<u8>| -> anyhow::Result<()> {
        loop {
            let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(&payload[..]);
            if let Some(k) = &key {
                rec = rec.key(k.as_str());
            }
            match producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    producer.poll(std::time::Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e).context("cannot produce to Kafka"),
            }
        }
    };
    match format {
        Format::JaegerProto | Format::JaegerJson => {
            for s in spans {
                let payload = if format == Format::JaegerProto {
                    jaeger_proto::encode(s, names, &EXTRA_TAGS)
                } else {
                    jaeger_json::encode(s, names, &EXTRA_TAGS)
                };
                send(Some(s.trace_id.to_string()), payload)?;
                progress.inc(1);
            }
        }
        Format::OtlpProto | Format::OtlpJson => {
            for chunk in spans.chunks(OTLP_BATCH) {
                let payload = if format == Format::OtlpProto {
                    otlp::encode_proto(chunk, names, &EXTRA_TAGS)
                } else {
                    otlp::encode_json(chunk, names, &EXTRA_TAGS)
                };
                send(None, payload)?;
                progress.inc(chunk.len() as u64);
            }
        }
        Format::JaegerUi => anyhow::bail!("jaeger-ui is a download format, not a Kafka encoding"),
    }
    producer.flush(std::time::Duration::from_secs(60)).context("messages were not delivered to Kafka")?;
    progress.finish_and_clear();
    Ok(())
}

pub fn run(a: SimulateArgs, config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(a.rate > 0.0, "--rate must be greater than zero");
    anyhow::ensure!((0.0..=1.0).contains(&a.loss_rate), "--loss-rate must be in [0, 1]");
    anyhow::ensure!((0.0..=1.0).contains(&a.loop_rate), "--loop-rate must be in [0, 1]");
    anyhow::ensure!((0.0..=1.0).contains(&a.n_plus_one_rate), "--n-plus-one-rate must be in [0, 1]");
    if let Some(brokers) = &a.brokers {
        // A wrong password or CA is one line naming it, not a delivery timeout a minute later.
        kafka_check::check(brokers, &config.kafka.properties, kafka_check::CHECK_TIMEOUT)?;
    }
    let start = chrono::DateTime::parse_from_rfc3339(&a.start)
        .with_context(|| format!("--start {:?} is not an RFC 3339 time", a.start))?
        .timestamp_micros();
    let mut names = Interner::new();
    let sim_config = SimConfig {
        s3: a.s3,
        message_loss_rate: a.loss_rate,
        ping_pong_rate: a.loop_rate,
        n_plus_one_rate: a.n_plus_one_rate,
        archive_every: a.archive_every,
        archive_delay_us: i64::try_from(a.archive_delay.as_micros()).unwrap_or(i64::MAX),
    };
    anyhow::ensure!(
        a.out.is_some() || a.brokers.is_some() || a.expected.is_some(),
        "nothing to write: pass --out FILE, --brokers HOST:PORT (with --topic) or --expected FILE"
    );
    let started = std::time::Instant::now();
    let mut sim = Simulator::new(sim_config, a.seed);
    let (spans, expected) = sim.batch(a.traces, start, (1e6 / a.rate) as i64, &mut names);
    let n = crate::model::text::thousands;
    let mut wrote = Vec::new();
    if let Some(out) = &a.out {
        let bytes = encode_file(a.format, &spans, &names);
        std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        wrote.push(format!("wrote {} ({}, {} bytes)", out.display(), a.format, n(bytes.len() as u64)));
    }
    if let Some(brokers) = &a.brokers {
        produce(brokers, &config.kafka.properties, &a.topic, a.format, &spans, &names)?;
        wrote.push(format!("produced to {} at {brokers} ({})", a.topic, a.format));
    }
    if let Some(path) = &a.expected {
        let mut text = String::new();
        for e in &expected {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        wrote.push(format!("wrote the expected anomalies to {}", path.display()));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "poirot simulate: {} traces, {} spans, {} anomalies expected, in {secs:.2} s ({} spans/s)",
        n(a.traces as u64),
        n(spans.len() as u64),
        n(expected.len() as u64),
        n((spans.len() as f64 / secs.max(1e-9)) as u64)
    );
    for w in wrote {
        println!("{w}");
    }
    Ok(())
}

/// A progress bar on stderr when a person watches it, else nothing.
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template(&format!("{{wide_bar}} {{pos}}/{{len}} {what} ({{eta}})"))
    {
        bar.set_style(style);
    }
    bar
}
