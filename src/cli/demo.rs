//! `poirot demo`: the simulator feeds the operator graph in process, in real
//! time; a web page shows live RED, the dependency graph and the latest
//! anomalies; `/metrics` serves Prometheus. Ctrl-C stops it cleanly.

use crate::analysis::DetectedAt;
use crate::config::Config;
use crate::dataflow::{Clock, SystemClock};
use crate::runtime::{Driver, InProcess, Pipeline};
use crate::sink::live::LivePage;
use crate::sink::log::LogAnomalies;
use crate::sink::{web, Sink};
use crate::source::demo::LiveSimulator;
use crate::source::simulator::SimConfig;
use crate::telemetry::health::Health;
use anyhow::Context as _;
use clap::Args;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(after_help = "Environment (or the [demo] section of --config):
  PUBLISHER_RATE=5.0              workflows started per second (POIROT_DEMO__PUBLISHER_RATE)
  SIMULATE_S3_BEHAVIOUR=CONST     CONST, PROBABILISTIC, or ERROR: the sandbox result is lost,
                                  a message_loss per workflow (POIROT_DEMO__S3_BEHAVIOUR)
  POIROT_DEMO__MESSAGE_LOSS_RATE=0.02   share of workflows whose SAMPLE_CLASSIFIED is lost
  POIROT_DEMO__PING_PONG_RATE=0.02      share where Reporter and Classificator bounce (a recursive chain)
  POIROT_DEMO__N_PLUS_ONE_RATE=0.02     share where the Reporter stores findings one by one (repeated calls)
  POIROT_DEMO__MESSAGE_LOSS_DEADLINE=5s how long an unconsumed message waits before it is a loss
  POIROT_DEMO__LISTEN=127.0.0.1:8080    the page and /metrics (or --listen)
  POIROT_LOG=info                 log level (debug: every anomaly as it is found)
The page is at / of the listen address; /metrics is Prometheus text.")]
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

/// Runs the simulator and the pipeline until `stop` is set.
fn pipeline_thread(config: Config, seed: u64, shared: web::Shared, stop: Arc<AtomicBool>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut pconf = super::pipeline_config(&config, DetectedAt::Clock(clock.clone()));
    // The simulated queues deliver in milliseconds: a lost message shows within seconds.
    pconf.flows.deadlines.min_us =
        i64::try_from(config.demo.message_loss_deadline.as_micros()).unwrap_or(i64::MAX);
    let pipeline = Pipeline::new(pconf, clock.clone());
    let demo = &config.demo;
    let sim = SimConfig {
        s3: demo.s3_behaviour,
        message_loss_rate: demo.message_loss_rate,
        ping_pong_rate: demo.ping_pong_rate,
        n_plus_one_rate: demo.n_plus_one_rate,
        ..SimConfig::default()
    };
    let mut source = LiveSimulator::new(sim, seed, demo.publisher_rate, clock);
    let page = LivePage::new("demo", move |snapshot| web::publish(&shared, snapshot))
        .with_jaeger_url(&config.ui.jaeger_url);
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(LogAnomalies::default()), Box::new(page)];
    let mut driver = Driver::new(pipeline, Box::new(InProcess), sinks);
    if let Err(e) = driver.run(&mut source, &stop) {
        tracing::error!("the demo pipeline stopped: {e}");
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
