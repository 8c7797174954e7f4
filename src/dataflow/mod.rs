//! The stream-processing core: the operator trait, event-time watermarks,
//! timers and clocks. Operators are driven by one thread per pipeline; keyed
//! routing happens before them (Kafka partitions are keyed by trace id, so each
//! pipeline owns every span of the traces it sees).
//!
//! Lifecycle of an operator: `on_start`, then any number of `process_element`
//! and `handle_watermark` calls (watermarks never go back), processing-time
//! `handle_tick`s, and `on_close` at the end of a finite input, which must flush
//! all state.
//!
//! ```
//! use poirot::dataflow::{Context, EventTime, Operator};
//! use poirot::model::Interner;
//! /// Counts elements and emits the count at every watermark.
//! struct Count(u64);
//! impl Operator for Count {
//!     type In = u32;
//!     type Out = (EventTime, u64);
//!     fn process_element(&mut self, _x: u32, _ctx: &mut Context<'_, Self::Out>) {
//!         self.0 += 1;
//!     }
//!     fn handle_watermark(&mut self, wm: EventTime, ctx: &mut Context<'_, Self::Out>) {
//!         ctx.emit((wm, self.0));
//!     }
//! }
//! let (mut op, mut names, mut out) = (Count(0), Interner::new(), Vec::new());
//! let mut ctx = Context::new(&mut names, &mut out);
//! op.process_element(7, &mut ctx);
//! op.handle_watermark(10, &mut ctx);
//! assert_eq!(out, vec![(10, 1)]);
//! ```

use crate::model::Interner;

mod clock;
mod offsets;
mod timers;
mod upstream;
mod watermark;

pub use clock::{Clock, ManualClock, ReadingClock, SystemClock};
pub use offsets::OffsetTracker;
pub use timers::TimerQueue;
pub use upstream::UpstreamWatermarks;
pub use watermark::{WatermarkConfig, WatermarkTracker};

/// Event time in microseconds since the Unix epoch.
pub type EventTime = i64;

/// What an operator sees besides its input: the interned names of the pipeline
/// and the collector its outputs go to.
pub struct Context<'a, O> {
    pub names: &'a mut Interner,
    pub out: &'a mut Vec<O>,
}

impl<'a, O> Context<'a, O> {
    pub fn new(names: &'a mut Interner, out: &'a mut Vec<O>) -> Self {
        Context { names, out }
    }

    #[inline]
    pub fn emit(&mut self, item: O) {
        self.out.push(item);
    }
}

/// A stage of the operator graph. Outputs go to the context's collector rather
/// than being returned, so one input may produce none or many.
pub trait Operator {
    type In;
    type Out;

    fn on_start(&mut self, _ctx: &mut Context<'_, Self::Out>) {}

    fn process_element(&mut self, input: Self::In, ctx: &mut Context<'_, Self::Out>);

    /// Event time has advanced to `watermark`: no element older than it is expected.
    fn handle_watermark(&mut self, _watermark: EventTime, _ctx: &mut Context<'_, Self::Out>) {}

    /// Processing time has advanced (for flushes and housekeeping).
    fn handle_tick(&mut self, _now_us: i64, _ctx: &mut Context<'_, Self::Out>) {}

    /// End of a finite input: emit everything still held.
    fn on_close(&mut self, _ctx: &mut Context<'_, Self::Out>) {}
}
