//! Helpers of the tests that use the harness's real servers (`tests/services.rs`,
//! `tests/stack.rs`): their addresses, child processes, and `poirot run`'s sink settings.

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

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

/// `poirot simulate` of `traces` demo traces with 10 % lost messages and 10 % loops,
/// produced in `format` to `topic` of the harness's Kafka, starting now; the anomalies
/// they must produce are listed in `expected`.
pub fn simulate_into(topic: &str, traces: &str, format: &str, expected: &Path) {
    let start = poirot::decode::time_fmt::format_rfc3339_us(now_us() / 1_000_000 * 1_000_000);
    let sim = Command::new(env!("CARGO_BIN_EXE_poirot"))
        .args([
            "simulate",
            "--traces",
            traces,
            "--loss-rate",
            "0.1",
            "--loop-rate",
            "0.1",
            "--format",
            format,
        ])
        .args(["--brokers", &env("POIROT_TEST_KAFKA"), "--topic", topic, "--start", &start])
        .arg("--expected")
        .arg(expected)
        .env("POIROT_LOG", "warn")
        .output()
        .expect("simulate");
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
}

/// Produces one record that is no span at all to `topic`.
pub fn produce_junk(topic: &str, payload: &[u8]) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", env("POIROT_TEST_KAFKA")).create().expect("producer");
    producer.send(BaseRecord::to(topic).key("junk").payload(payload)).expect("enqueue");
    producer.flush(Duration::from_secs(30)).expect("flush");
}
