//! Delivery accounting of the repartition producer: per epoch, the messages
//! not yet acknowledged, so offsets can wait for them without waiting on Kafka.

use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Message};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Messages not yet acknowledged, per epoch (see [`Rekeyer::seal`]); epochs with
/// none are absent.
pub(super) type Outstanding = Arc<Mutex<BTreeMap<u64, u64>>>;

/// Notes deliveries: each message carries its epoch, and leaves that epoch's
/// outstanding count when the broker acknowledged it or it failed for good
/// (which is also noted, and stops every commit behind it).
pub(super) struct Deliveries {
    pub(super) failed: Arc<AtomicBool>,
    pub(super) outstanding: Outstanding,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        if let Err((e, m)) = result {
            tracing::error!(
                "repartition: a message to {} partition {} was not delivered: {e}",
                m.topic(),
                m.partition()
            );
            self.failed.store(true, Ordering::Relaxed);
        }
        settle(&self.outstanding, epoch as u64);
    }
}

/// One more message of `epoch` is about to be queued (noted before `send`,
/// which may serve its delivery at once).
pub(super) fn note_queued(outstanding: &Outstanding, epoch: u64) {
    if let Ok(mut o) = outstanding.lock() {
        *o.entry(epoch).or_insert(0) += 1;
    }
}

/// A message of `epoch` is no longer outstanding.
pub(super) fn settle(outstanding: &Outstanding, epoch: u64) {
    if let Ok(mut o) = outstanding.lock() {
        if let Some(left) = o.get_mut(&epoch) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                o.remove(&epoch);
            }
        }
    }
}
