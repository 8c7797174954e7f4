//! The runtime: the operator graph every command runs ([`pipeline`]). Sources
//! hand it [`Input`]s through one entry point; sinks read its [`Outputs`].

pub mod pipeline;

pub use pipeline::{FinishedTrace, Input, InputStats, Outputs, Pipeline, PipelineConfig, RecordOutcome};
