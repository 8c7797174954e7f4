//! A producer's progress: what each input partition may still send into the
//! repartition topic, written as watermark records, and which input partitions
//! are held back for running ahead of the slowest ([`super::alignment`]).

use super::alignment;
use super::deliveries::{note_queued, settle};
use super::{Rekeyer, HOLDS_NOTHING, PRODUCER_HEADER, WATERMARK_HEADER};
use crate::dataflow::EventTime;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use std::sync::atomic::AtomicBool;

/// How often a producer writes its progress.
pub(super) const WATERMARK_EVERY_US: i64 = 200_000;
/// ... or sooner, once this many spans were re-keyed since the last: readers hold
/// every span the progress does not cover yet, and a backlog is re-keyed at
/// hundreds of thousands of spans a second.
pub(super) const WATERMARK_EVERY_SPANS: u64 = 16_384;
/// How often the input partitions' alignment is looked at (processing time).
pub const ALIGN_EVERY_US: i64 = 100_000;

/// What one input partition may still send into the repartition topic.
#[derive(Clone, Copy, Debug)]
pub(super) enum InputProgress {
    /// Assigned, nothing read yet: anything (until the idle timeout).
    Pending { since_us: i64 },
    /// Re-keyed spans up to `max_event`, the last at `at_us`; `recent`: the
    /// latest event time of the last record (where its reading stands).
    Active { max_event: EventTime, recent: EventTime, at_us: i64 },
    /// Its records are keyed: they do not go through the repartition topic.
    Keyed,
}

impl Rekeyer {
    /// Writes this process's progress into every partition when it is due: every
    /// 200 ms, or once [`WATERMARK_EVERY_SPANS`] were re-keyed since the last. The
    /// spans waiting go first: a reader must see them before the progress that
    /// covers them.
    pub fn send_watermarks(&mut self, now: i64, stop: &AtomicBool) {
        if self.progress.is_empty()
            || self.last_watermark.is_some_and(|(_, at)| {
                now - at < WATERMARK_EVERY_US && self.since_watermark < WATERMARK_EVERY_SPANS
            })
        {
            return;
        }
        let idle = self.idle_us;
        // A held-back partition re-keys nothing, but it is not idle: it still bounds.
        let held = &self.held;
        let bound = |(i, p): (&u32, &InputProgress)| match *p {
            InputProgress::Pending { since_us } if now - since_us < idle => Some(EventTime::MIN),
            InputProgress::Active { max_event, at_us, .. } if now - at_us < idle || held.contains(i) => {
                Some(max_event)
            }
            _ => None,
        };
        let w = self.progress.iter().filter_map(bound).min().unwrap_or(HOLDS_NOTHING);
        if self.write_pending(stop) {
            self.write_watermark(w, now);
        }
    }

    /// `input` was assigned: until it is read from, it may send anything.
    pub fn assigned(&mut self, input: u32, now: i64, stop: &AtomicBool) {
        self.progress.insert(input, InputProgress::Pending { since_us: now });
        self.last_watermark = None; // tell the readers at once
        self.send_watermarks(now, stop);
    }

    /// A record of `input` was keyed (processed where it was read).
    pub fn keyed(&mut self, input: u32) {
        if let Some(p @ InputProgress::Pending { .. }) = self.progress.get_mut(&input) {
            *p = InputProgress::Keyed;
        }
    }

    /// `input` was revoked: it no longer holds this producer's progress back.
    pub fn forget(&mut self, input: u32) {
        self.progress.remove(&input);
        self.held_changed |= self.held.remove(&input);
    }

    /// The input partitions to hold back now, when that changed (looked at every
    /// [`ALIGN_EVERY_US`]): those whose reading runs ahead, in event time, of the
    /// slowest partition re-keying (see [`alignment`]).
    pub fn running_ahead(&mut self, now: i64) -> Option<Vec<u32>> {
        if now.saturating_sub(self.last_aligned_us) < ALIGN_EVERY_US {
            return None;
        }
        self.last_aligned_us = now;
        let idle = self.idle_us;
        let recent: Vec<(u32, EventTime)> = self
            .progress
            .iter()
            .filter_map(|(&p, progress)| match *progress {
                InputProgress::Active { recent, at_us, .. }
                    if now - at_us < idle || self.held.contains(&p) =>
                {
                    Some((p, recent))
                }
                _ => None,
            })
            .collect();
        let held = alignment::running_ahead(&recent, &self.held, self.drift);
        if held == self.held && !std::mem::take(&mut self.held_changed) {
            return None;
        }
        self.held = held;
        Some(self.held.iter().copied().collect())
    }

    fn write_watermark(&mut self, event_time: EventTime, now: i64) {
        let (w, id) = (event_time.to_string(), self.id.to_string());
        for partition in 0..self.partitions {
            let headers = OwnedHeaders::new()
                .insert(Header { key: WATERMARK_HEADER, value: Some(w.as_str()) })
                .insert(Header { key: PRODUCER_HEADER, value: Some(id.as_str()) });
            let record: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&self.topic, self.epoch as usize)
                    .partition(partition)
                    .payload(&[][..])
                    .headers(headers);
            note_queued(&self.outstanding, self.epoch);
            if let Err((e, _)) = self.producer.send(record) {
                settle(&self.outstanding, self.epoch);
                // Only progress: the next one carries it.
                tracing::debug!("repartition: watermark not queued: {e}");
            }
        }
        self.unflushed = true;
        self.last_watermark = Some((event_time, now));
        self.since_watermark = 0;
    }
}
