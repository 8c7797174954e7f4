//! poirot: a span stream processor. See the README for what it does and `DESIGN.md`
//! for the definitions its analyses implement.

pub mod analysis;
#[cfg(feature = "servers")]
pub mod cli;
pub mod config;
pub mod dataflow;
pub mod decode;
pub mod model;
pub mod runtime;
pub mod sink;
pub mod source;
#[cfg(feature = "servers")]
pub mod telemetry;
