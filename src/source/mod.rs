//! Where spans come from: Kafka (run), files (replay), and the built-in simulator (demo, simulate).

pub mod file;
#[cfg(feature = "servers")]
pub mod kafka;
#[cfg(feature = "servers")]
pub mod kafka_check;
#[cfg(feature = "servers")]
pub mod kafka_log;
#[cfg(feature = "servers")]
pub mod repartition;
pub mod simulator;
