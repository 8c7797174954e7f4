//! The runtime: the operator graph every command runs ([`pipeline`]), the
//! keyBy(trace id) stage in front of it ([`exchange`]), and the one loop that
//! connects a source, the graph and the sinks ([`driver`]).

pub mod driver;
pub mod exchange;
pub mod pipeline;

pub use driver::{Driver, DriverError, Ended};
pub use exchange::{Exchange, InProcess};
pub use pipeline::{FinishedTrace, Input, InputStats, Outputs, Pipeline, PipelineConfig, RecordOutcome};
