//! The replay outputs: four files in one directory.
//!
//! - `anomalies.ndjson`: one anomaly document per line, sorted by time, trace, kind, span;
//! - `dependencies.ndjson`: service edges (`source`, `target`, `relation`, `calls`,
//!   `errors`, duration figures in µs, messaging `destinations`);
//! - `operation_dependencies.ndjson`: the same per operation;
//! - `metrics.prom`: Prometheus text exposition of the RED series at the end of the input.

use super::{Closing, Fault, Round, Sink, SinkError, Written};
use crate::analysis::Outputs;
use crate::analysis::{Anomaly, Resolution};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub const ANOMALIES: &str = "anomalies.ndjson";
pub const DEPENDENCIES: &str = "dependencies.ndjson";
pub const OPERATION_DEPENDENCIES: &str = "operation_dependencies.ndjson";
pub const METRICS: &str = "metrics.prom";

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: String,
    pub source: std::io::Error,
}

fn write_ndjson<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<(), WriteError> {
    let err = |source| WriteError { path: path.display().to_string(), source };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for r in rows {
        serde_json::to_writer(&mut f, r).map_err(|e| err(e.into()))?;
        f.write_all(b"\n").map_err(err)?;
    }
    f.flush().map_err(err)
}

/// Sorts anomalies the way the files list them.
pub fn sort_anomalies(anomalies: &mut [Anomaly]) {
    anomalies.sort_by(|a, b| {
        (&a.timestamp, &a.trace_id, a.kind, &a.span_id).cmp(&(&b.timestamp, &b.trace_id, b.kind, &b.span_id))
    });
}

/// Rewrites the dependency files and metrics.prom of `p` in `dir`.
pub fn write_dependencies(dir: &Path, p: &Outputs<'_>) -> Result<(), WriteError> {
    write_ndjson(&dir.join(DEPENDENCIES), &p.edges.service_rows(p.names))?;
    write_ndjson(&dir.join(OPERATION_DEPENDENCIES), &p.edges.operation_rows(p.names))?;
    let metrics = dir.join(METRICS);
    std::fs::write(&metrics, super::prometheus::render_red(p))
        .map_err(|source| WriteError { path: metrics.display().to_string(), source })
}

/// Writes all four outputs of `p` and `anomalies` into `dir` (created if missing).
pub fn write_outputs(dir: &Path, p: &Outputs<'_>, anomalies: &mut [Anomaly]) -> Result<(), WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError { path: dir.display().to_string(), source })?;
    sort_anomalies(anomalies);
    write_ndjson(&dir.join(ANOMALIES), anomalies)?;
    write_dependencies(dir, p)
}

/// `poirot replay`: the four files, written once the input ended.
pub struct ReplayFiles {
    dir: PathBuf,
    anomalies: Vec<Anomaly>,
}

impl ReplayFiles {
    pub fn new(dir: PathBuf) -> Self {
        ReplayFiles { dir, anomalies: Vec::new() }
    }
}

impl Sink for ReplayFiles {
    fn name(&self) -> &'static str {
        "files"
    }

    fn write(&mut self, round: &Round<'_>, _stop: &AtomicBool) -> Result<Written, SinkError> {
        self.anomalies.extend(round.anomalies.iter().cloned());
        for r in round.resolutions {
            if let Some(a) = self.anomalies.iter_mut().rev().find(|a| r.resolves(a)) {
                r.apply(a);
            }
        }
        // Only whole results: not after a failure or a stop.
        if round.last == Some(Closing::InputEnded) {
            write_outputs(&self.dir, &round.outputs, &mut self.anomalies)
                .map_err(|e| SinkError::new("files", Fault::User, e))?;
        }
        Ok(Written::Acknowledged)
    }
}

/// How often `poirot run --out` rewrites the dependency files and metrics.prom.
const REWRITE_EVERY: Duration = Duration::from_secs(5);

/// `poirot run --out DIR`: appends anomalies as they are found and rewrites the
/// dependency files and `metrics.prom` now and then.
pub struct LiveFiles {
    dir: PathBuf,
    /// Unbuffered: each anomaly is one whole-line write, so readers never see half a line.
    anomalies: std::fs::File,
    rewritten: Instant,
}

impl LiveFiles {
    pub fn open(dir: PathBuf) -> Result<Self, WriteError> {
        let err = |path: &Path, source| WriteError { path: path.display().to_string(), source };
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        let path = dir.join(ANOMALIES);
        let f =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| err(&path, e))?;
        Ok(LiveFiles { dir, anomalies: f, rewritten: Instant::now() })
    }

    fn anomaly(&mut self, a: &Anomaly) -> Result<(), WriteError> {
        let mut line = serde_json::to_vec(a).map_err(|e| self.error(e.into()))?;
        line.push(b'\n');
        self.anomalies.write_all(&line).map_err(|e| self.error(e))
    }

    /// A resolved loss: a line with the fields that changed, under the same
    /// kind, trace and span as the loss's line (merge them to read the state).
    fn resolution(&mut self, r: &Resolution) -> Result<(), WriteError> {
        let mut v = serde_json::to_value(r).map_err(|e| self.error(e.into()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("kind".into(), "message_loss".into());
            o.insert("status".into(), "resolved".into());
        }
        let mut line = serde_json::to_vec(&v).map_err(|e| self.error(e.into()))?;
        line.push(b'\n');
        self.anomalies.write_all(&line).map_err(|e| self.error(e))
    }

    fn flush(&mut self, p: &Outputs<'_>) -> Result<(), WriteError> {
        self.anomalies.flush().map_err(|e| self.error(e))?;
        write_dependencies(&self.dir, p)
    }

    fn error(&self, source: std::io::Error) -> WriteError {
        WriteError { path: self.dir.join(ANOMALIES).display().to_string(), source }
    }
}

/// A file that cannot be written is reported and the run goes on (the other
/// sinks still get everything); at the end it is an error.
impl Sink for LiveFiles {
    fn name(&self) -> &'static str {
        "files"
    }

    fn write(&mut self, round: &Round<'_>, _stop: &AtomicBool) -> Result<Written, SinkError> {
        for a in round.anomalies {
            if let Err(e) = self.anomaly(a) {
                tracing::warn!("{e}");
            }
        }
        for r in round.resolutions {
            if let Err(e) = self.resolution(r) {
                tracing::warn!("{e}");
            }
        }
        if round.last.is_some() || self.rewritten.elapsed() >= REWRITE_EVERY {
            self.rewritten = Instant::now();
            match self.flush(&round.outputs) {
                Err(e) if round.last.is_some() => return Err(SinkError::new("files", Fault::User, e)),
                Err(e) => tracing::warn!("{e}"),
                Ok(()) => {}
            }
        }
        Ok(Written::Acknowledged)
    }
}
