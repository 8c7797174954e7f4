//! The `poirot` command line.

pub mod demo;
pub mod deps;
pub mod healthcheck;
pub mod replay;
pub mod run;
pub mod simulate;

use crate::analysis::{AnalysisConfig, AssemblyConfig, DeadlineConfig, DetectedAt, FlowConfig};
use crate::config::Config;
use crate::dataflow::WatermarkConfig;
use crate::runtime::PipelineConfig;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "poirot",
    version,
    about = "Reassembles Jaeger traces from a span stream into DAGs and derives RED metrics, service dependencies and anomalies (message loss, broken references, recursive chains, reference cycles, oversized traces)."
)]
pub struct Cli {
    /// TOML configuration file; every key can also be set as POIROT_<SECTION>__<KEY>.
    #[arg(long, global = true, env = "POIROT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Consume the Jaeger span topic from Kafka (the main job): dependencies to Neo4j, anomalies to Elasticsearch, /metrics.
    Run(run::RunArgs),
    /// Analyse trace dumps offline and write the results into a directory.
    Replay(replay::ReplayArgs),
    /// Run the built-in demo pipeline with a web page and /metrics (no servers needed).
    Demo(demo::DemoArgs),
    /// Ask the dependency graph in Neo4j: downstream, upstream, path, impact.
    Deps(deps::DepsArgs),
    /// Write simulated traces of the demo pipeline to a file in any supported format.
    Simulate(simulate::SimulateArgs),
    /// Exit 0 when a running poirot is ready (/readyz answers 200; for container HEALTHCHECKs).
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// The pipeline settings a configuration describes.
pub fn pipeline_config(c: &Config, detected_at: DetectedAt) -> PipelineConfig {
    let us = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    PipelineConfig {
        assembly: AssemblyConfig {
            inactivity_gap_us: us(c.assembly.inactivity_gap),
            max_spans_per_trace: c.assembly.max_spans_per_trace,
            max_buffered_spans: c.assembly.max_buffered_spans,
        },
        watermark: WatermarkConfig {
            out_of_orderness_us: us(c.assembly.out_of_orderness),
            idle_timeout_us: us(c.assembly.idle_timeout),
        },
        analysis: AnalysisConfig {
            min_reentries: c.anomalies.min_reentries,
            min_repeated_calls: c.anomalies.min_repeated_calls,
            adjust_for_sampling: c.red.adjust_for_sampling,
            // Checked when the configuration was read.
            peer_attributes: c.service_graph.peer_attributes().unwrap_or_default(),
            max_spans_per_trace: c.assembly.max_spans_per_trace,
            max_series: c.metrics.max_series,
            max_names: c.metrics.max_names,
            max_name_bytes: c.metrics.max_name_bytes,
            documents: c.anomalies.limits(),
        },
        flows: FlowConfig {
            closed_retention_us: us(c.assembly.closed_retention),
            max_closed_bytes: c.assembly.max_closed_bytes,
            deadlines: DeadlineConfig {
                min_us: us(c.message_loss.min_deadline),
                max_us: us(c.message_loss.max_deadline),
                latency_factor: c.message_loss.latency_factor,
                fixed: c.message_loss.deadlines.iter().map(|(d, t)| (d.clone(), us(*t))).collect(),
            },
            ..FlowConfig::default()
        },
        detected_at,
        dimensions: c.red.dimensions.clone(),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    match cli.command {
        Command::Run(a) => run::run(a, &config),
        Command::Replay(a) => replay::run(a, &config),
        Command::Demo(a) => demo::run(a, &config),
        Command::Simulate(a) => simulate::run(a, &config),
        Command::Deps(a) => deps::run(a, &config),
        Command::Healthcheck(a) => healthcheck::run(a, &config),
    }
}
