//! `poirot demo`: the simulator feeds the operator graph in process, in real
//! time; a web page shows live RED, the dependency graph and the latest
//! anomalies; `/metrics` serves Prometheus. Ctrl-C stops it cleanly.

use crate::analysis::DetectedAt;
use crate::config::Config;
use crate::dataflow::{Clock, SystemClock};
use crate::decode::{jaeger_proto, Format};
use crate::model::{Interner, Span};
use crate::runtime::{Input, Pipeline};
use crate::sink::live::{self, RecentAnomalies};
use crate::sink::web;
use crate::source::simulator::{SimConfig, Simulator, EXTRA_TAGS};
use crate::telemetry::health::Health;
use anyhow::Context as _;
use clap::Args;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Address for the web page and /metrics (overrides demo.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seed of the simulator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const STEP: Duration = Duration::from_millis(25);

/// Runs the simulator and the pipeline until `stop` is set.
fn pipeline_thread(config: Config, seed: u64, shared: web::Shared, stop: Arc<AtomicBool>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pconf = super::pipeline_config(&config, DetectedAt::Clock(clock.clone()));
    let mut pipeline = Pipeline::new(pconf, clock.clone());
    let demo = &config.demo;
    let mut sim = Simulator::new(
        SimConfig {
            s3: demo.s3_behaviour,
            message_loss_rate: demo.message_loss_rate,
            ping_pong_rate: demo.ping_pong_rate,
        },
        seed,
    );
    // The simulated services have their own names, as real producers would.
    let mut sim_names = Interner::new();
    let interval_us = (1e6 / demo.publisher_rate) as i64;
    let mut next_start = clock.now_us();
    // Spans not yet "finished", newest end time first so the due ones pop off the back.
    let mut pending: Vec<Span> = Vec::new();
    let mut recent = RecentAnomalies::default();
    let mut last_snapshot = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now_us();
        let mut started = false;
        while next_start <= now {
            pending.extend(sim.workflow(next_start, &mut sim_names).spans);
            next_start += interval_us;
            started = true;
        }
        if started {
            pending.sort_by_key(|s| std::cmp::Reverse(s.event_time_us()));
        }
        while pending.last().is_some_and(|s| s.event_time_us() <= now) {
            if let Some(s) = pending.pop() {
                let record = jaeger_proto::encode(&s, &sim_names, &EXTRA_TAGS);
                pipeline.push(Input::Record {
                    partition: 0,
                    offset: None,
                    format: Some(Format::JaegerProto),
                    bytes: &record,
                });
            }
        }
        pipeline.push(Input::Tick);
        for a in pipeline.drain_anomalies() {
            tracing::info!(kind = %a.kind, trace_id = %a.trace_id, "{}", a.summary);
            recent.push(a);
        }
        if last_snapshot.elapsed() >= live::SNAPSHOT_EVERY {
            web::publish(&shared, live::take("demo", &pipeline.outputs(), &recent));
            last_snapshot = std::time::Instant::now();
        }
        std::thread::sleep(STEP);
    }
}

pub fn run(args: DemoArgs, config: &Config) -> anyhow::Result<()> {
    let listen = args.listen.clone().unwrap_or_else(|| config.demo.listen.clone());
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:8080"))?;
    let security = crate::sink::web_security::WebSecurity::from_section(&config.run)?;
    // Nothing to wait for: the demo is always ready.
    let shared = web::shared("demo", crate::telemetry::process::ProcessMetrics::new(), Health::new());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(tokio::sync::Notify::new());
    let worker = {
        let (config, shared, stop) = (config.clone(), shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || pipeline_thread(config, args.seed, shared, stop))
            .context("cannot start the pipeline thread")?
    };
    let until = web::Until {
        duration: args.duration.map(|d| Duration::from_secs_f64(d.max(0.0))),
        pipeline_done: done,
    };
    let scheme = security.scheme();
    let result = web::serve(addr, shared, security, until, |bound| {
        tracing::info!(
            "poirot demo: page {scheme}://{bound}/  metrics {scheme}://{bound}/metrics  (s3={:?}, {} workflows/s; Ctrl-C stops)",
            config.demo.s3_behaviour,
            config.demo.publisher_rate
        );
    });
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    tracing::info!("poirot demo stopped");
    result
}
