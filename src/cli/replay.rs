//! `poirot replay`: trace dumps in, the four result files out.
#![allow(clippy::print_stdout)]

use crate::analysis::DetectedAt;
use crate::config::Config;
use crate::dataflow::SystemClock;
use crate::decode::Format;
use crate::runtime::{Driver, InProcess, Outputs, Pipeline};
use crate::sink::files::{self, ReplayFiles};
use crate::sink::Sink;
use crate::source::file::FileSource;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    Auto,
    JaegerProto,
    JaegerJson,
    JaegerUi,
    OtlpProto,
    OtlpJson,
}

impl FormatArg {
    pub fn format(self) -> Option<Format> {
        match self {
            FormatArg::Auto => None,
            FormatArg::JaegerProto => Some(Format::JaegerProto),
            FormatArg::JaegerJson => Some(Format::JaegerJson),
            FormatArg::JaegerUi => Some(Format::JaegerUi),
            FormatArg::OtlpProto => Some(Format::OtlpProto),
            FormatArg::OtlpJson => Some(Format::OtlpJson),
        }
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Framing of each format in a file:
  jaeger-proto  jaeger.api_v2.Span messages, each after a varint byte count (length-delimited)
  jaeger-json   one Jaeger Kafka JSON span per line
  jaeger-ui     one Jaeger UI / query API document ({\"data\":[...]}) for the whole input
  otlp-proto    ExportTraceServiceRequest messages, length-delimited
  otlp-json     one OTLP JSON ExportTraceServiceRequest per line (or one pretty-printed)
With --format auto (the default) the first bytes of each input decide.

Writes into DIR: anomalies.ndjson, dependencies.ndjson, operation_dependencies.ndjson, metrics.prom.
Inputs are read one after another as one stream; every trace closes at the end.")]
pub struct ReplayArgs {
    /// Input format.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Directory to write the results into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Files to read; `-` reads standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
}

/// Opens an input, returning a reader and its size when known.
fn open(input: &str) -> anyhow::Result<(Box<dyn Read>, Option<u64>)> {
    if input == "-" {
        return Ok((Box::new(std::io::stdin().lock()), None));
    }
    let f = std::fs::File::open(input).with_context(|| format!("cannot read input {input}"))?;
    let meta = f.metadata().with_context(|| format!("cannot read input {input}"))?;
    if meta.is_dir() {
        anyhow::bail!("cannot read input {input}: it is a directory");
    }
    Ok((Box::new(f), Some(meta.len())))
}

pub fn run(args: ReplayArgs, config: &Config) -> anyhow::Result<()> {
    let started = Instant::now();
    // Open everything first: a missing file fails before any work is done.
    let mut inputs = Vec::new();
    let mut total_bytes = 0;
    for name in &args.inputs {
        let (reader, size) = open(name)?;
        total_bytes += size.unwrap_or(0);
        inputs.push((name.clone(), reader));
    }
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total_bytes);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {wide_bar} ({eta})")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let bar = progress.clone();
    let mut source = FileSource::new(inputs, args.format.format(), move |bytes| bar.inc(bytes));

    let mut pconf = super::pipeline_config(config, DetectedAt::TraceClose);
    // One finite stream: no partition is ever idle.
    pconf.watermark.idle_timeout_us = i64::MAX;
    let pipeline = Pipeline::new(pconf, Arc::new(SystemClock));
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(ReplayFiles::new(args.out.clone()))];
    let mut driver = Driver::new(pipeline, Box::new(InProcess), sinks);
    driver.run(&mut source, &AtomicBool::new(false))?;
    progress.finish_and_clear();
    let outputs = driver.outputs();
    print_summary(&outputs, &args, started.elapsed().as_secs_f64());
    // Nothing read, only errors: the input is not what --format says (or what detection
    // could tell); an empty result would look like a clean run.
    if outputs.stats.spans == 0 && outputs.input.bad_total() > 0 {
        let tried = match args.format.format() {
            Some(f) => format!("as {f} (--format)"),
            None => "in any format (detected from the first bytes)".into(),
        };
        let last = outputs.recent_errors.last().map(|e| format!(": {e}")).unwrap_or_default();
        anyhow::bail!("no span could be read from the input {tried}{last}");
    }
    Ok(())
}

fn print_summary(p: &Outputs<'_>, args: &ReplayArgs, secs: f64) {
    let s = p.stats;
    let n = crate::model::text::thousands;
    println!(
        "poirot replay: {} input(s), {} records, {} spans in {} traces ({} late) in {:.2} s ({} spans/s)",
        args.inputs.len(),
        n(p.input.records),
        n(s.spans),
        n(s.traces),
        n(s.late_spans),
        secs,
        n((s.spans as f64 / secs.max(1e-9)) as u64)
    );
    let kinds: Vec<String> = s.anomalies.iter().map(|(k, v)| format!("{k} {}", n(*v))).collect();
    println!("anomalies: {}", if kinds.is_empty() { "none".into() } else { kinds.join(", ") });
    if p.input.bad.is_empty() {
        println!("bad records: none");
    } else {
        let bad: Vec<String> = p.input.bad.iter().map(|(r, v)| format!("{r} {}", n(*v))).collect();
        println!("bad records: {} (skipped)", bad.join(", "));
        if let Some(e) = p.recent_errors.last() {
            println!("  last one: {e}");
        }
    }
    let cut: Vec<String> = crate::model::NameKind::ALL
        .iter()
        .map(|&k| (k, p.names.truncated(k)))
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    if !cut.is_empty() {
        println!("names cut to {} bytes: {}", p.names.max_name_bytes(), cut.join(", "));
    }
    let out = args.out.display();
    println!(
        "wrote {out}/{}, {out}/{}, {out}/{}, {out}/{}",
        files::ANOMALIES,
        files::DEPENDENCIES,
        files::OPERATION_DEPENDENCIES,
        files::METRICS
    );
}
