//! The compact internal span model every decoder produces and every analysis reads.

mod ids;
mod intern;
mod span;

pub use ids::{SpanId, TraceId};
pub use intern::{Interner, Sym, OVERFLOW};
pub use span::{RefKind, Refs, Span, SpanKind, SpanRef};
