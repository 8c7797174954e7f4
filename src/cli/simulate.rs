//! `poirot simulate`: the demo pipeline's traces, written to a file in any format.

use crate::config::S3Behaviour;
use crate::decode::{jaeger_json, jaeger_proto, jaeger_ui, otlp, Format};
use crate::model::{Interner, Span};
use crate::source::file::write_delimited;
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
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
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
    /// Event time of the first workflow (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub start: String,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::from_name(s).ok_or_else(|| format!("unknown format {s:?}"))
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

pub fn run(a: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.rate > 0.0, "--rate must be greater than zero");
    anyhow::ensure!((0.0..=1.0).contains(&a.loss_rate), "--loss-rate must be in [0, 1]");
    anyhow::ensure!((0.0..=1.0).contains(&a.loop_rate), "--loop-rate must be in [0, 1]");
    let start = chrono::DateTime::parse_from_rfc3339(&a.start)
        .with_context(|| format!("--start {:?} is not an RFC 3339 time", a.start))?
        .timestamp_micros();
    let mut names = Interner::new();
    let config = SimConfig { s3: a.s3, message_loss_rate: a.loss_rate, ping_pong_rate: a.loop_rate };
    let mut sim = Simulator::new(config, a.seed);
    let (spans, expected) = sim.batch(a.traces, start, (1e6 / a.rate) as i64, &mut names);
    std::fs::write(&a.out, encode_file(a.format, &spans, &names))
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    if let Some(path) = &a.expected {
        let mut text = String::new();
        for e in &expected {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(traces = a.traces, spans = spans.len(), anomalies = expected.len(), out = %a.out.display(), "simulated");
    Ok(())
}
