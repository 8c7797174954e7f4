//! The pipeline's interface: what a source hands it ([`Input`]) and what becomes
//! of a record ([`RecordOutcome`]): decoded here, what could not be used counted.
//! What sinks read is [`crate::analysis::Outputs`].

use super::Pipeline;
use crate::dataflow::EventTime;
use crate::decode::{self, DecodeError, Format};
use crate::model::{Interner, Span};

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

const RECENT_ERRORS: usize = 20;

impl Pipeline {
    /// Decodes one record of `partition` (`format` `None`: detect it) and feeds its spans.
    pub(super) fn push_record_inner(
        &mut self,
        partition: u32,
        offset: Option<i64>,
        format: Option<Format>,
        record: &[u8],
    ) -> RecordOutcome {
        let mut spans = std::mem::take(&mut self.spans);
        let outcome = self.decode(format, record, &mut spans);
        self.feed(partition, offset, &mut spans, true);
        self.spans = spans;
        if let Some(offset) = offset {
            self.offsets.processed(partition, offset);
        }
        outcome
    }

    /// Decodes one record (`format` `None`: detect it) without feeding it: its
    /// spans are appended to `spans` (for [`Input::Spans`], or to be re-keyed
    /// elsewhere), its errors counted.
    pub fn decode(&mut self, format: Option<Format>, record: &[u8], spans: &mut Vec<Span>) -> RecordOutcome {
        self.input.records += 1;
        let format = format.or_else(|| decode::detect(record));
        let before = spans.len();
        let outcome = self.decode_with(spans, |names, spans, errors| match format {
            Some(f) => decode::decode(f, record, names, spans, errors),
            None => errors.push(decode::unrecognized(record)),
        });
        if format == Some(Format::JaegerUi) {
            // A UI document lists traces in no time order; feed it as a tracer would have.
            spans[before..].sort_by_key(Span::event_time_us);
        }
        outcome
    }

    /// Decodes a record of the repartition topic, written by
    /// [`crate::source::repartition::Rekeyer`] as Jaeger protobuf: a `Batch` of
    /// spans (`batch`), or one span; its input record was counted already.
    pub fn decode_shuffled(&mut self, record: &[u8], batch: bool, spans: &mut Vec<Span>) -> RecordOutcome {
        self.input.shuffled_records += 1;
        self.decode_with(spans, |names, spans, errors| {
            if batch {
                decode::jaeger_proto::decode_batch(record, names, spans, errors);
            } else {
                decode::decode(Format::JaegerProto, record, names, spans, errors);
            }
        })
    }

    /// Runs `decode` and counts the errors it found.
    fn decode_with(
        &mut self,
        spans: &mut Vec<Span>,
        decode: impl FnOnce(&mut Interner, &mut Vec<Span>, &mut Vec<DecodeError>),
    ) -> RecordOutcome {
        let mut errors = std::mem::take(&mut self.errors);
        let before = spans.len();
        decode(&mut self.names, spans, &mut errors);
        let outcome = RecordOutcome { spans: spans.len() - before, error: errors.first().cloned() };
        for e in errors.drain(..) {
            self.reject(e);
        }
        self.errors = errors;
        outcome
    }

    /// Counts a record or span that could not be used.
    pub(super) fn reject(&mut self, e: DecodeError) {
        *self.input.bad.entry(e.reason).or_default() += 1;
        if self.recent_errors.len() == RECENT_ERRORS {
            self.recent_errors.remove(0);
        }
        self.recent_errors.push(e);
    }
}
