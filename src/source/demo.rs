//! `poirot demo`'s source: the simulator's workflows in real time. Each span is
//! handed over when it ends, encoded as Jaeger's Kafka writer would.

use super::simulator::{SimConfig, Simulator, EXTRA_TAGS};
use super::{Event, Record, Source, SourceError};
use crate::dataflow::Clock;
use crate::decode::{jaeger_proto, Format};
use crate::model::{Interner, Span};
use std::sync::Arc;
use std::time::Duration;

/// How often spans due are handed over.
const STEP: Duration = Duration::from_millis(25);

pub struct LiveSimulator {
    sim: Simulator,
    /// The simulated services have their own names, as real producers would.
    names: Interner,
    clock: Arc<dyn Clock>,
    interval_us: i64,
    next_start: i64,
    /// Spans not yet "finished", newest end time first so the due ones pop off the back.
    pending: Vec<Span>,
    /// When spans were last handed over: at most one batch per [`STEP`].
    last_batch: Option<std::time::Instant>,
}

impl LiveSimulator {
    /// Starts `rate` workflows per second on `clock`.
    pub fn new(config: SimConfig, seed: u64, rate: f64, clock: Arc<dyn Clock>) -> Self {
        let next_start = clock.now_us();
        LiveSimulator {
            sim: Simulator::new(config, seed),
            names: Interner::new(),
            clock,
            interval_us: (1e6 / rate) as i64,
            next_start,
            pending: Vec::new(),
            last_batch: None,
        }
    }
}

impl Source for LiveSimulator {
    fn next(&mut self, wait: Duration) -> Result<Option<Event>, SourceError> {
        if let Some(t) = self.last_batch {
            std::thread::sleep(STEP.saturating_sub(t.elapsed()).min(wait));
        }
        self.last_batch = Some(std::time::Instant::now());
        let now = self.clock.now_us();
        let mut started = false;
        while self.next_start <= now {
            self.pending.extend(self.sim.workflow(self.next_start, &mut self.names).spans);
            self.next_start += self.interval_us;
            started = true;
        }
        if started {
            self.pending.sort_by_key(|s| std::cmp::Reverse(s.event_time_us()));
        }
        let mut records = Vec::new();
        while self.pending.last().is_some_and(|s| s.event_time_us() <= now) {
            let Some(s) = self.pending.pop() else { break };
            let payload = jaeger_proto::encode(&s, &self.names, &EXTRA_TAGS);
            records.push(Record {
                payload: payload.into(),
                format: Some(Format::JaegerProto),
                ..Default::default()
            });
        }
        Ok((!records.is_empty()).then_some(Event::Batch(records)))
    }
}
