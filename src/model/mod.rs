//! The compact internal span model every decoder produces and every analysis reads.

mod ids;
mod intern;
mod peer;
pub mod sampling;
mod span;
pub mod text;
pub mod time;

pub use ids::{SpanId, TraceId};
pub use intern::{Interner, NameKind, Sym, DEFAULT_MAX_NAME_BYTES, OVERFLOW};
pub use peer::{PeerAttribute, DEFAULT_PEER_ATTRIBUTES};
pub use span::{RefKind, Refs, Span, SpanKind, SpanRef, DIMENSION_SEPARATOR};
