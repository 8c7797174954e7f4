//! What the pipeline has computed, as sinks read it: a read-only view over the
//! analyses ([`Outputs`]), the input counters ([`InputStats`]) and the traces
//! that closed with where they ended ([`FinishedTrace`]).

use crate::analysis::{AnalysisStats, AnomalyCounters, Edges, Flows, Red, ServiceGraph};
use crate::dataflow::EventTime;
use crate::decode::{DecodeError, Reason};
use crate::model::{Interner, TraceId};
use std::collections::BTreeMap;

/// Counters of the input side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputStats {
    pub records: u64,
    pub spans: u64,
    /// Spans of traces a previous owner had already finished, dropped on re-read.
    pub replayed_spans: u64,
    /// Spans of poirot's own service (self-tracing), dropped.
    pub own_spans: u64,
    /// Records read from the repartition topic (not counted in `records` again).
    pub shuffled_records: u64,
    /// Link records read from the repartition topic (not counted in `records` again).
    pub link_records: u64,
    pub bad: BTreeMap<Reason, u64>,
}

impl InputStats {
    pub fn bad_total(&self) -> u64 {
        self.bad.values().sum()
    }
}

/// What the pipeline has computed, for sinks to read.
#[derive(Clone, Copy)]
pub struct Outputs<'a> {
    pub names: &'a Interner,
    pub red: &'a Red,
    pub graph: &'a ServiceGraph,
    pub critical: &'a super::critical_path::CriticalPaths,
    pub edges: &'a Edges,
    pub counters: &'a AnomalyCounters,
    pub stats: &'a AnalysisStats,
    pub input: &'a InputStats,
    /// The most recent decode errors, newest last.
    pub recent_errors: &'a [DecodeError],
    /// The least event-time watermark over the partitions with data.
    pub watermark: EventTime,
    pub open_traces: usize,
    pub buffered_spans: usize,
    /// The state that outlives a trace's close, and its counters.
    pub flows: &'a Flows,
}

/// A trace that closed, with where its spans ended in its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishedTrace {
    pub trace_id: TraceId,
    pub partition: u32,
    pub last_offset: i64,
}
