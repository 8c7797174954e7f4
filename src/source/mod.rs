//! Where spans come from: files (replay), and the built-in simulator (demo, simulate).

pub mod file;
pub mod simulator;
