//! Helpers of the tests that use the harness's real servers (`tests/services.rs`,
//! `tests/stack.rs`): their addresses, child processes, and `poirot run`'s sink settings.

use std::process::{Child, Command};

/// An address or setting from `.cache/run/env`, which `make services-up` writes.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run `make services-up` and source .cache/run/env"))
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A child process (poirot) killed when the test ends, passed or not.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Points `poirot run`'s Neo4j sink at the harness's Neo4j.
pub fn neo4j_sink(cmd: &mut Command) -> &mut Command {
    cmd.env("POIROT_NEO4J__URI", env("POIROT_TEST_NEO4J"))
        .env("POIROT_NEO4J__USER", env("POIROT_TEST_NEO4J_USER"))
        .env("POIROT_NEO4J__PASSWORD", env("POIROT_TEST_NEO4J_PASSWORD"))
}
