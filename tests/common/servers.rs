//! Helpers of the tests that use the harness's real servers (`tests/services.rs`,
//! `tests/run.rs`, `tests/groups.rs`, `tests/faults.rs`, `tests/stack.rs`, ...): their
//! addresses, child processes, Kafka and Prometheus reads, and `poirot run`'s sink settings.

use super::http;
use poirot::decode::{self, Format};
use poirot::model::Interner;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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
    simulate_into_with(topic, traces, format, expected, &[]);
}

/// [`simulate_into`] with more `poirot simulate` arguments.
pub fn simulate_into_with(topic: &str, traces: &str, format: &str, expected: &Path, extra: &[&str]) {
    let start = poirot::model::time::format_rfc3339_us(now_us() / 1_000_000 * 1_000_000);
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
        .args(extra)
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Now as RFC 3339, so simulated spans have current event times.
pub fn chrono_now() -> String {
    let secs = now_us() / 1_000_000;
    poirot::model::time::format_rfc3339_us(secs * 1_000_000)
}

/// Runs `f` with a Bolt connection to the test Neo4j.
pub fn with_neo4j<T>(f: impl AsyncFnOnce(&neo4rs::Graph) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let graph = neo4rs::Graph::new(
            env("POIROT_TEST_NEO4J"),
            env("POIROT_TEST_NEO4J_USER"),
            env("POIROT_TEST_NEO4J_PASSWORD"),
        )
        .await
        .expect("bolt connection");
        f(&graph).await
    })
}

pub fn neo4j_clear() {
    with_neo4j(async |g| {
        g.run(neo4rs::query("MATCH (n) DETACH DELETE n")).await.expect("clear");
    });
}

/// Service-level CALLS in Neo4j as (source, target, relation, calls, errors),
/// sorted; calls to virtual nodes (`:Peer`) with [`VIRTUAL`] after their relation.
pub fn neo4j_calls() -> Vec<(String, String, String, i64, i64)> {
    with_neo4j(async |g| {
        let mut rows = g
            .execute(
                neo4rs::query(
                    "MATCH (s:Service)-[c:CALLS]->(t) WHERE t:Service OR (t:Peer AND t.virtual AND c.virtual) \
                     RETURN s.name AS s, t.name AS t, \
                     CASE WHEN t:Peer THEN c.relation + $virtual ELSE c.relation END AS r, \
                     c.calls AS calls, c.errors AS errors",
                )
                .param("virtual", VIRTUAL),
            )
            .await
            .expect("query");
        let mut out = Vec::new();
        while let Some(r) = rows.next().await.expect("row") {
            out.push((
                r.get::<String>("s").expect("s"),
                r.get::<String>("t").expect("t"),
                r.get::<String>("r").expect("r"),
                r.get::<i64>("calls").expect("calls"),
                r.get::<i64>("errors").expect("errors"),
            ));
        }
        out.sort();
        out
    })
}

/// The service edges `poirot replay` finds in a dump: what a clean run gives.
pub fn clean_calls(dump: &std::path::Path) -> Vec<(String, String, String, i64, i64)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = Command::new(env!("CARGO_BIN_EXE_poirot"))
        .arg("replay")
        .arg("--out")
        .arg(dir.path())
        .arg(dump)
        .output()
        .expect("replay");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    replay_calls(&dir.path().join("dependencies.ndjson"))
}

/// What the relation of a call to a virtual node ends with in the edge lists
/// the tests compare (`child_of virtual`): such a call is an edge of its own.
pub const VIRTUAL: &str = " virtual";

/// The service edges of a replay's dependencies.ndjson in the same shape.
pub fn replay_calls(deps: &std::path::Path) -> Vec<(String, String, String, i64, i64)> {
    let mut out: Vec<_> = std::fs::read_to_string(deps)
        .expect("dependencies.ndjson")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let virtual_node = v["virtual"].as_bool().unwrap_or(false);
            (
                s("source"),
                s("target"),
                s("relation") + if virtual_node { VIRTUAL } else { "" },
                v["calls"].as_i64().unwrap_or(0),
                v["errors"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

pub fn metric(addr: &str, name: &str) -> f64 {
    http::get(&format!("http://{addr}/metrics"))
        .map(|r| r.body)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

/// Creates `topic` with `partitions` partitions on the harness's Kafka.
pub fn create_topic(topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", env("POIROT_TEST_KAFKA")).create().expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let r = rt.block_on(admin.create_topics([&new], &AdminOptions::new())).expect("create topics");
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
}

/// `poirot run` on `topic` of the harness's Kafka as group `group`, with Neo4j and
/// the search index (index prefix = the topic), short windows (2 s gap, 1 s
/// out-of-orderness, 10 s idleness), serving on `listen`; killed when dropped.
pub fn start_run_on(topic: &str, group: &str, listen: &str, config: Option<&Path>) -> Proc {
    let mut cmd = run_command(topic, group, listen, config);
    cmd.env("POIROT_LOG", "warn");
    Proc(cmd.spawn().expect("poirot run starts"))
}

/// [`start_run_on`], its log at `info` appended to `log` (assignments, revocations,
/// every anomaly with its trace id): what a failed exactness check is explained by.
pub fn start_run_logged(topic: &str, group: &str, listen: &str, config: Option<&Path>, log: &Path) -> Proc {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut cmd = run_command(topic, group, listen, config);
    // Links given up on are named at debug level: a fault test that misses one says which.
    cmd.env("POIROT_LOG", "info,poirot::analysis::flows=debug").stderr(file);
    Proc(cmd.spawn().expect("poirot run starts"))
}

fn run_command(topic: &str, group: &str, listen: &str, config: Option<&Path>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poirot"));
    neo4j_sink(&mut cmd);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["run", "--brokers", &env("POIROT_TEST_KAFKA"), "--topic", topic, "--group", group])
        .args(["--listen", listen])
        .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s")
        .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
        .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "1s")
        .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "10s")
        .env("POIROT_ELASTICSEARCH__URL", env("POIROT_TEST_OPENSEARCH"))
        .env("POIROT_ELASTICSEARCH__INDEX_PREFIX", topic)
        .stdout(std::process::Stdio::null());
    cmd
}

/// Runs a poirot command to its end (at most `limit`), returning its output and how long it took.
pub fn run_to_end(cmd: &mut Command, limit: Duration) -> (std::process::Output, Duration) {
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("poirot starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let stderr = reader.join().expect("stderr reader");
    (std::process::Output { status, stdout: Vec::new(), stderr }, took)
}

/// A `poirot run` config for several members of one group on keyed input, as
/// the stack runs it: the repartition topic beside the input (links between
/// traces travel through it), and a dead member noticed after 6 s instead of
/// librdkafka's 45 s. The Archiver's reports wait up to 10 minutes for it, so a
/// link delayed by a rebalance never makes a loss that a clean run has not.
pub fn group_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("poirot.toml");
    std::fs::write(
        &config,
        "[kafka]\nrepartition = \"auto\"\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n[message_loss.deadlines]\nREPORT_STORED = \"10m\"\n",
    )
    .expect("config");
    config
}

/// An anomaly as tests compare them: kind, trace, the span for a message loss, destination.
pub type AnomalyKey = (String, String, String, String);

/// The anomalies of an ndjson file (whole lines only: the file may be in the middle
/// of being appended to), as sorted comparable keys.
pub fn anomaly_keys(path: &Path) -> Vec<AnomalyKey> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut v: Vec<_> = whole
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        // `poirot run --out` appends a resolved loss as a line of its own, without a summary.
        .filter(|v| v.get("summary").is_some() || v.get("resolved_at").is_none())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let span = if s("kind") == "message_loss" { s("span_id") } else { String::new() };
            (s("kind"), s("trace_id"), span, s("destination"))
        })
        .collect();
    v.sort();
    v
}

/// Asserts that `got` and `want` hold the same items (as multisets) and, when they
/// do not, names only what is missing and what is extra rather than both lists whole.
pub fn assert_same<T: Ord + Clone + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    let count = |v: &[T]| {
        let mut m = std::collections::BTreeMap::<T, usize>::new();
        for x in v {
            *m.entry(x.clone()).or_default() += 1;
        }
        m
    };
    let (g, w) = (count(got), count(want));
    let diff = |a: &std::collections::BTreeMap<T, usize>, b: &std::collections::BTreeMap<T, usize>| {
        a.iter()
            .filter_map(|(k, n)| {
                let m = b.get(k).copied().unwrap_or(0);
                (n > &m).then(|| (k.clone(), n - m))
            })
            .collect::<Vec<_>>()
    };
    let (missing, extra) = (diff(&w, &g), diff(&g, &w));
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} expected, {} found\nmissing (item, times): {missing:?}\nextra (item, times): {extra:?}",
        want.len(),
        got.len()
    );
}

/// What a failed exactness check needs to be explained from a CI log alone: poirot's
/// own counters (histogram buckets left out) from `listen`, and the last lines of its
/// log at `log` (assignments, revocations, warnings).
pub fn diagnostics(listen: &str, log: &Path) -> String {
    let page = http::get(&format!("http://{listen}/metrics")).map(|r| r.body).unwrap_or_default();
    let counters: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("poirot_") && !l.contains("_bucket") && !l.contains("{service="))
        .collect();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("anomaly") && !l.contains("kind=")).collect();
    let tail = &lines[lines.len().saturating_sub(60)..];
    format!(
        "poirot's counters:\n{}\nits log (last {} lines):\n{}",
        counters.join("\n"),
        tail.len(),
        tail.join("\n")
    )
}

/// A consumer of the test Kafka in `group`, reading from the start.
pub fn consumer(group: &str) -> rdkafka::consumer::BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", env("POIROT_TEST_KAFKA"))
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()
        .expect("kafka consumer")
}

/// Polls poirot's /metrics until `metric` reaches `want` (or panics after `timeout`).
pub fn wait_for_metric(addr: &str, metric: &str, want: f64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let body = http::get(&format!("http://{addr}/metrics")).map(|r| r.body).unwrap_or_default();
        let v: f64 = body
            .lines()
            .find(|l| l.starts_with(&format!("{metric} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(-1.0);
        if v >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{metric} stayed at {v}, wanted {want}:\n{body}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Polls `topic` from the start with a fresh group until `done` says so or `timeout`.
pub fn consume_until(topic: &str, timeout: Duration, mut done: impl FnMut(&[u8]) -> bool) -> bool {
    let group = format!("poirot-test-{}-{}", topic, std::process::id());
    let c = consumer(&group);
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            if done(m.payload().unwrap_or_default()) {
                return true;
            }
        }
    }
    false
}

/// Queries Prometheus; returns the result vector.
pub fn prom_query(q: &str) -> Vec<serde_json::Value> {
    let url = format!("{}/api/v1/query?query={}", env("POIROT_TEST_PROMETHEUS"), urlencode(q));
    http::get(&url)
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// Services seen in spans decoded from `topic` in `format` that started after `since_us`.
pub fn services_on_topic(topic: &str, format: Format, want: &[&str], since_us: i64) -> BTreeSet<String> {
    let mut names = Interner::new();
    let mut seen = BTreeSet::new();
    let mut bad = Vec::new();
    consume_until(topic, Duration::from_secs(90), |payload| {
        let (mut spans, mut errors) = (Vec::new(), Vec::new());
        assert_eq!(decode::detect(payload), Some(format), "{topic}: detected format");
        decode::decode(format, payload, &mut names, &mut spans, &mut errors);
        bad.extend(errors);
        // The topic keeps earlier runs' spans: only this run's count.
        for s in spans.into_iter().filter(|s| s.start_us >= since_us) {
            seen.insert(names.resolve(s.service).to_owned());
        }
        want.iter().all(|w| seen.contains(*w))
    });
    assert!(bad.is_empty(), "{topic}: poirot could not decode {bad:?}");
    seen
}
