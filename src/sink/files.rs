//! The replay outputs: four files in one directory.
//!
//! - `anomalies.ndjson`: one anomaly document per line, sorted by time, trace, kind, span;
//! - `dependencies.ndjson`: service edges (`source`, `target`, `relation`, `calls`,
//!   `errors`, duration figures in µs, messaging `destinations`);
//! - `operation_dependencies.ndjson`: the same per operation;
//! - `metrics.prom`: Prometheus text exposition of the RED series at the end of the input.

use crate::analysis::Anomaly;
use crate::runtime::Outputs;
use std::io::Write;
use std::path::Path;

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
