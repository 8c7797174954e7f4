//! Where spans come from: Kafka (run), files (replay), and the built-in simulator (demo, simulate).

pub mod file;
pub mod kafka;
pub mod kafka_check;
pub mod kafka_log;
pub mod repartition;
pub mod simulator;
