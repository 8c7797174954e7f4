//! The pipeline's interface: what a source hands it ([`Input`]) and what becomes
//! of a record ([`RecordOutcome`]). What sinks read is [`crate::analysis::Outputs`].

use crate::dataflow::EventTime;
use crate::decode::{DecodeError, Format};
use crate::model::Span;

/// What a source hands the pipeline: the one way in ([`Pipeline::push`]).
#[derive(Debug)]
pub enum Input<'a> {
    /// A record of `partition` in `format` (`None`: detected), decoded here.
    /// `offset`: where it was read, for a source with offsets (the pipeline then
    /// knows which offsets open traces still need: [`Pipeline::committable`]).
    Record { partition: u32, offset: Option<i64>, format: Option<Format>, bytes: &'a [u8] },
    /// The spans [`Pipeline::decode`] gave for the record at `offset` of `partition`
    /// (emptied): keyed by trace id here, their event time moves the partition's.
    Spans { partition: u32, offset: Option<i64>, spans: &'a mut Vec<Span> },
    /// One decoded span of `partition`, from a source without offsets.
    Span { partition: u32, span: Span },
    /// Spans of the record at `offset` of a repartition-topic partition (emptied):
    /// that partition's event time moves with its producers' watermark records
    /// ([`Input::UpstreamWatermark`]), not with its spans.
    Shuffled { partition: u32, offset: i64, spans: &'a mut Vec<Span> },
    /// A watermark record at `offset` of a repartition-topic partition: `producer`
    /// has re-keyed everything up to `event_time` ([`EventTime::MAX`]: it bounds nothing).
    UpstreamWatermark { partition: u32, offset: i64, producer: u64, event_time: EventTime },
    /// A link record at `offset` of a repartition-topic `partition`: a span of
    /// another trace reduced to its reference into a trace this process owns
    /// (Jaeger protobuf). Applied exactly once: registered when its edge counts,
    /// holding its offset while it waits for its trace.
    LinkRecord { partition: u32, offset: i64, bytes: &'a [u8] },
    /// The record at `offset` was handled without feeding spans here (they were
    /// re-keyed into the repartition topic).
    PassedOn { partition: u32, offset: i64 },
    /// Input that could not be used at all (an unreadable file, a bad frame).
    Rejected(DecodeError),
    /// `partition` was assigned: it takes part in event time from now on, even
    /// before its first record. `gated`: the source reports when it has read the
    /// partition to its end ([`Input::AtEnd`]), and it cannot turn idle before.
    /// Traces this pipeline finished from it before it was taken away, if it was,
    /// are skipped when their records are read again.
    Assigned { partition: u32, gated: bool },
    /// The source has read `partition` to its end: its silence counts towards idleness.
    AtEnd(u32),
    /// The group coordinator acknowledged `offset` as `partition`'s committed
    /// offset: finished traces below it need no remembering.
    Committed { partition: u32, offset: i64 },
    /// `partition` was taken away: its open traces are dropped unanalysed (the new
    /// owner re-reads them from the committed offset) and its event time is forgotten.
    Revoked(u32),
    /// Processing time passed: idle partitions and silent producers move event time.
    Tick,
    /// End of a finite input: every open trace closes.
    End,
}

/// What became of one record.
#[derive(Debug, Default)]
pub struct RecordOutcome {
    pub spans: usize,
    /// The first error, when the record or one of its spans could not be decoded.
    pub error: Option<DecodeError>,
}
