//! A simulator of the seed talk's message-driven malware-analysis pipeline:
//!
//! ```text
//! startWorkflow ─SAMPLE_RECEIVED─┬─> SandboxAnalyser (S3_GET, VM_DEPLOYMENT, EXECUTE_SAMPLE) ─SANDBOX_RESULT─┐
//!                                └─> StaticalAnalyser (STATIC_ANALYSIS) ─────────────────────STATIC_RESULT──┴─> Classificator
//! Classificator (one span, two parents) ─SAMPLE_CLASSIFIED─> Reporter (store report)
//! ```
//!
//! With `archive_every` N > 0, the Reporter also publishes REPORT_STORED, and an
//! Archiver batch consumer, in a trace of its own, takes every N of them
//! `archive_delay_us` later: one span with a link (`follows_from`) to each
//! producer, in N other traces — a message flow across traces.
//!
//! Knobs: the S3 behaviour (`CONST`, `PROBABILISTIC`, or `ERROR`: the S3 step
//! fails and the sandbox's result message is lost), a message-loss rate (the
//! SAMPLE_CLASSIFIED message is lost) and a ping-pong rate (Reporter and
//! Classificator bounce RECHECK messages twice: a recursive chain) and an N+1
//! rate (the Reporter stores a report's findings one INSERT at a time: repeated
//! calls). Every trace comes with the anomalies it must produce, so tests know
//! the truth.

use crate::analysis::AnomalyKind;
use crate::config::S3Behaviour;
use crate::model::{Interner, RefKind, Span, SpanId, SpanKind, SpanRef, Sym, TraceId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    pub s3: S3Behaviour,
    pub message_loss_rate: f64,
    pub ping_pong_rate: f64,
    /// Probability that the Reporter stores a report's findings one by one.
    pub n_plus_one_rate: f64,
    /// Reports an Archiver batch takes at once through links (0: no archiving).
    pub archive_every: usize,
    /// How long after the last report of a batch the Archiver consumes it.
    pub archive_delay_us: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            s3: S3Behaviour::Const,
            message_loss_rate: 0.0,
            ping_pong_rate: 0.0,
            n_plus_one_rate: 0.0,
            archive_every: 0,
            archive_delay_us: 500_000,
        }
    }
}

/// An anomaly a simulated trace must produce.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Expected {
    pub kind: AnomalyKind,
    pub trace_id: String,
    /// The producer span for message_loss; empty where the detector chooses.
    pub span_id: String,
    /// The destination for message_loss.
    pub destination: String,
}

/// Findings an N+1 report stores one by one: more than `min_repeated_calls` (5).
const FINDINGS: usize = 6;

pub struct SimTrace {
    pub spans: Vec<Span>,
    pub expected: Vec<Expected>,
}

/// String tags every simulated span carries beyond the analysed ones, so encoded
/// spans are about as large as real ones (~10 tags).
pub const EXTRA_TAGS: [(&str, &str); 7] = [
    ("component", "poirot-simulator"),
    ("messaging.system", "kafka"),
    ("host.name", "analysis-node-7"),
    ("sample.sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ("thread.name", "worker-3"),
    ("deployment.environment", "demo"),
    ("service.version", "1.4.2"),
];

pub struct Simulator {
    config: SimConfig,
    rng: SmallRng,
}

struct Builder<'a> {
    names: &'a mut Interner,
    rng: &'a mut SmallRng,
    trace_id: TraceId,
    spans: Vec<Span>,
}

const MS: i64 = 1000;

impl Builder<'_> {
    /// Adds a span and returns its index.
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &str,
        operation: &str,
        kind: SpanKind,
        start_us: i64,
        duration_us: i64,
        refs: &[(usize, RefKind)],
        destination: &str,
    ) -> usize {
        let span_id = SpanId(self.rng.gen_range(1..=u64::MAX));
        let refs = refs
            .iter()
            .map(|&(i, kind)| SpanRef { trace_id: self.trace_id, span_id: self.spans[i].span_id, kind })
            .collect();
        let destination = if destination.is_empty() { Sym(0) } else { self.names.intern(destination) };
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id,
            start_us,
            duration_us: duration_us.max(1) as u64,
            refs,
            service: self.names.intern(service),
            operation: self.names.intern(operation),
            destination,
            kind,
            ..Span::default()
        });
        self.spans.len() - 1
    }

    fn end(&self, i: usize) -> i64 {
        self.spans[i].event_time_us()
    }

    fn jitter(&mut self, base_ms: i64) -> i64 {
        base_ms * MS + self.rng.gen_range(0..=base_ms * MS / 4)
    }
}

impl Simulator {
    pub fn new(config: SimConfig, seed: u64) -> Self {
        Simulator { config, rng: SmallRng::seed_from_u64(seed) }
    }

    /// One workflow starting at `t0` (µs since the epoch).
    pub fn workflow(&mut self, t0: i64, names: &mut Interner) -> SimTrace {
        let config = self.config;
        let trace_id = TraceId::new(self.rng.gen(), self.rng.gen_range(1..=u64::MAX));
        let lose_classified = self.rng.gen_bool(config.message_loss_rate);
        let ping_pong = self.rng.gen_bool(config.ping_pong_rate);
        // Drawn only when on, so traces of other settings stay as they were for a seed.
        let n_plus_one = config.n_plus_one_rate > 0.0 && self.rng.gen_bool(config.n_plus_one_rate);
        let s3_ms = match config.s3 {
            S3Behaviour::Const => 40,
            S3Behaviour::Error => 30,
            // Long tail: mostly tens of ms, sometimes seconds.
            S3Behaviour::Probabilistic => (20.0 / self.rng.gen_range(0.01f64..1.0)) as i64,
        };
        let mut b = Builder { names, rng: &mut self.rng, trace_id, spans: Vec::new() };
        let mut expected = Vec::new();
        let lost = |b: &Builder<'_>, i: usize, destination: &str| Expected {
            kind: AnomalyKind::MessageLoss,
            trace_id: trace_id.to_string(),
            span_id: b.spans[i].span_id.to_string(),
            destination: destination.to_owned(),
        };
        use RefKind::{ChildOf, FollowsFrom};
        use SpanKind::{Client, Consumer, Internal, Producer, Server};

        let root = b.span("startWorkflow", "startWorkflow", Server, t0, 30 * MS, &[], "");
        let pub_received = b.span(
            "startWorkflow",
            "publish SAMPLE_RECEIVED",
            Producer,
            t0 + 5 * MS,
            5 * MS,
            &[(root, ChildOf)],
            "SAMPLE_RECEIVED",
        );

        // Sandbox: download, deploy a VM, run the sample, publish the result.
        let sb_start = b.end(pub_received) + b.jitter(15);
        let s3 = sb_start + 2 * MS;
        let s3_dur = b.jitter(s3_ms);
        let (vm_dur, exec_dur) =
            if config.s3 == S3Behaviour::Error { (0, 0) } else { (b.jitter(200), b.jitter(500)) };
        let sb_pub_start = s3 + s3_dur + vm_dur + exec_dur + 2 * MS;
        let sb_total = sb_pub_start + 5 * MS - sb_start;
        let sb = b.span(
            "SandboxAnalyser",
            "consume SAMPLE_RECEIVED",
            Consumer,
            sb_start,
            sb_total,
            &[(pub_received, FollowsFrom)],
            "SAMPLE_RECEIVED",
        );
        let s3_span = b.span("SandboxAnalyser", "S3_GET", Client, s3, s3_dur, &[(sb, ChildOf)], "");
        b.spans[s3_span].peer = b.names.intern("s3");
        if config.s3 == S3Behaviour::Error {
            b.spans[s3_span].error = true;
        } else {
            b.span("SandboxAnalyser", "VM_DEPLOYMENT", Internal, s3 + s3_dur, vm_dur, &[(sb, ChildOf)], "");
            b.span(
                "SandboxAnalyser",
                "EXECUTE_SAMPLE",
                Internal,
                s3 + s3_dur + vm_dur,
                exec_dur,
                &[(sb, ChildOf)],
                "",
            );
        }
        let sb_pub = b.span(
            "SandboxAnalyser",
            "publish SANDBOX_RESULT",
            Producer,
            sb_pub_start,
            3 * MS,
            &[(sb, ChildOf)],
            "SANDBOX_RESULT",
        );

        // Static analysis in parallel.
        let st_start = b.end(pub_received) + b.jitter(12);
        let st_dur = b.jitter(100);
        let st = b.span(
            "StaticalAnalyser",
            "consume SAMPLE_RECEIVED",
            Consumer,
            st_start,
            st_dur + 10 * MS,
            &[(pub_received, FollowsFrom)],
            "SAMPLE_RECEIVED",
        );
        b.span(
            "StaticalAnalyser",
            "STATIC_ANALYSIS",
            Internal,
            st_start + 2 * MS,
            st_dur,
            &[(st, ChildOf)],
            "",
        );
        let st_pub = b.span(
            "StaticalAnalyser",
            "publish STATIC_RESULT",
            Producer,
            st_start + st_dur + 4 * MS,
            3 * MS,
            &[(st, ChildOf)],
            "STATIC_RESULT",
        );

        if config.s3 == S3Behaviour::Error {
            // The sandbox result never arrives: the join times out with only one input.
            expected.push(lost(&b, sb_pub, "SANDBOX_RESULT"));
            let start = b.end(st_pub) + 2_000 * MS;
            let cl = b.span(
                "Classificator",
                "classify",
                Consumer,
                start,
                4 * MS,
                &[(st_pub, FollowsFrom)],
                "STATIC_RESULT",
            );
            b.spans[cl].error = true;
            return SimTrace { spans: b.spans, expected };
        }

        // The join: one span, two parents.
        let cl_start = b.end(sb_pub).max(b.end(st_pub)) + b.jitter(8);
        let cl_dur = b.jitter(30);
        let cl = b.span(
            "Classificator",
            "classify",
            Consumer,
            cl_start,
            cl_dur + 8 * MS,
            &[(sb_pub, FollowsFrom), (st_pub, FollowsFrom)],
            "",
        );
        let cl_pub = b.span(
            "Classificator",
            "publish SAMPLE_CLASSIFIED",
            Producer,
            cl_start + cl_dur,
            3 * MS,
            &[(cl, ChildOf)],
            "SAMPLE_CLASSIFIED",
        );
        if lose_classified {
            expected.push(lost(&b, cl_pub, "SAMPLE_CLASSIFIED"));
            return SimTrace { spans: b.spans, expected };
        }
        let rep_start = b.end(cl_pub) + b.jitter(10);
        let findings = if n_plus_one { FINDINGS } else { 0 };
        let rep = b.span(
            "Reporter",
            "consume SAMPLE_CLASSIFIED",
            Consumer,
            rep_start,
            40 * MS + findings as i64 * 4 * MS,
            &[(cl_pub, FollowsFrom)],
            "SAMPLE_CLASSIFIED",
        );
        let db_dur = b.jitter(20);
        let db =
            b.span("Reporter", "store report", Client, rep_start + 5 * MS, db_dur, &[(rep, ChildOf)], "");
        b.spans[db].peer = b.names.intern("postgresql");
        // N+1: one INSERT per finding, each after the one before.
        let mut at = b.end(db);
        for _ in 0..findings {
            let insert = b.span("Reporter", "store finding", Client, at, 3 * MS, &[(rep, ChildOf)], "");
            b.spans[insert].peer = b.names.intern("postgresql");
            at = b.end(insert) + MS;
        }
        if n_plus_one {
            expected.push(Expected {
                kind: AnomalyKind::RepeatedCalls,
                trace_id: trace_id.to_string(),
                span_id: String::new(),
                destination: String::new(),
            });
        }
        if config.archive_every > 0 {
            b.span(
                "Reporter",
                "publish REPORT_STORED",
                Producer,
                b.end(db),
                2 * MS,
                &[(rep, ChildOf)],
                "REPORT_STORED",
            );
        }

        if ping_pong {
            // Reporter asks for a re-check twice: R → C → R → C → R.
            let mut parent = rep;
            let mut t = b.end(rep);
            for _ in 0..2 {
                let ask = b.span(
                    "Reporter",
                    "publish RECHECK",
                    Producer,
                    t,
                    2 * MS,
                    &[(parent, ChildOf)],
                    "RECHECK",
                );
                let c = b.span(
                    "Classificator",
                    "consume RECHECK",
                    Consumer,
                    b.end(ask) + 5 * MS,
                    10 * MS,
                    &[(ask, FollowsFrom)],
                    "RECHECK",
                );
                let reply = b.span(
                    "Classificator",
                    "publish RECHECK_DONE",
                    Producer,
                    b.end(c) - 3 * MS,
                    2 * MS,
                    &[(c, ChildOf)],
                    "RECHECK_DONE",
                );
                let r = b.span(
                    "Reporter",
                    "consume RECHECK_DONE",
                    Consumer,
                    b.end(reply) + 5 * MS,
                    6 * MS,
                    &[(reply, FollowsFrom)],
                    "RECHECK_DONE",
                );
                parent = r;
                t = b.end(r);
            }
            expected.push(Expected {
                kind: AnomalyKind::RecursiveChain,
                trace_id: trace_id.to_string(),
                span_id: String::new(),
                destination: String::new(),
            });
        }
        SimTrace { spans: b.spans, expected }
    }

    /// The Archiver's batch consumer span, in a trace of its own, linking `reports`.
    pub fn archive(&mut self, reports: &[Span], names: &mut Interner) -> Span {
        let last = reports.iter().map(Span::event_time_us).max().unwrap_or(0);
        Span {
            trace_id: TraceId::new(self.rng.gen(), self.rng.gen_range(1..=u64::MAX)),
            span_id: SpanId(self.rng.gen_range(1..=u64::MAX)),
            start_us: last + self.config.archive_delay_us,
            duration_us: 20 * MS as u64,
            refs: reports
                .iter()
                .map(|r| SpanRef { trace_id: r.trace_id, span_id: r.span_id, kind: RefKind::FollowsFrom })
                .collect(),
            service: names.intern("Archiver"),
            operation: names.intern("archive reports"),
            destination: names.intern("REPORT_STORED"),
            kind: SpanKind::Consumer,
            ..Span::default()
        }
    }

    /// `count` workflows started `interval_us` apart from `t0`, their spans in the
    /// order tracers report them (by end time), and the anomalies they must produce.
    pub fn batch(
        &mut self,
        count: usize,
        t0: i64,
        interval_us: i64,
        names: &mut Interner,
    ) -> (Vec<Span>, Vec<Expected>) {
        let mut spans = Vec::new();
        let mut expected = Vec::new();
        let mut stored = Vec::new();
        for i in 0..count {
            let t = self.workflow(t0 + i as i64 * interval_us, names);
            let report = names.get("publish REPORT_STORED");
            stored.extend(t.spans.iter().filter(|s| Some(s.operation) == report).cloned());
            spans.extend(t.spans);
            expected.extend(t.expected);
        }
        if self.config.archive_every > 0 {
            for reports in stored.chunks(self.config.archive_every) {
                spans.push(self.archive(reports, names));
            }
        }
        spans.sort_by_key(Span::event_time_us);
        expected.sort();
        (spans, expected)
    }
}
