//! Kafka with TLS and SCRAM: the harness's SASL_SSL and SSL listeners (a test CA made by
//! `scripts/services/kafka.sh`, SCRAM users created at format time).
//!
//! `make test` brings the servers up and runs these with `--ignored`; by hand:
//! `scripts/services/services.sh up kafka && . .cache/run/env && cargo test --test security -- --ignored`.

mod common;

use common::http;
use common::servers::{
    anomaly_keys, assert_same, diagnostics, env, free_port, metric, now_us, run_to_end, Proc,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const POIROT: &str = env!("CARGO_BIN_EXE_poirot");
const WRONG_PASSWORD: &str = "not-the-password-5f3a9c";

/// The librdkafka settings of a SCRAM client of the SASL_SSL listener.
fn scram(mechanism: &str, password: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanism", mechanism.to_owned()),
        ("sasl.username", env("POIROT_TEST_KAFKA_SCRAM_USER")),
        ("sasl.password", password.to_owned()),
        ("ssl.ca.location", env("POIROT_TEST_KAFKA_CA")),
    ])
}

/// How the settings reach poirot: a `--config` file, or `POIROT_KAFKA__PROPERTIES__...`.
#[derive(Clone, Copy)]
enum Via {
    File,
    Environment,
}

/// Adds `props` to a poirot command the way `via` says (the file goes into `dir`).
fn with_props(cmd: &mut Command, props: &BTreeMap<&str, String>, via: Via, dir: &Path) {
    match via {
        Via::File => {
            let mut text = String::from("[kafka.properties]\n");
            for (k, v) in props {
                text.push_str(&format!("{k:?} = {v:?}\n"));
            }
            let path = dir.join("poirot.toml");
            std::fs::write(&path, text).expect("write the config file");
            cmd.arg("--config").arg(path);
        }
        Via::Environment => {
            for (k, v) in props {
                let name = format!("POIROT_KAFKA__PROPERTIES__{}", k.replace('.', "_").to_uppercase());
                cmd.env(name, v);
            }
        }
    }
}

/// `poirot simulate` of `traces` traces (10 % lost messages, 10 % loops) into `topic`
/// through `brokers` with `props`; the anomalies they must produce go to `expected`.
fn simulate(brokers: &str, topic: &str, traces: usize, props: &BTreeMap<&str, String>, via: Via, dir: &Path) {
    let start = poirot::model::time::format_rfc3339_us(now_us() / 1_000_000 * 1_000_000);
    let mut cmd = Command::new(POIROT);
    with_props(&mut cmd, props, via, dir);
    let out = cmd
        .args(["simulate", "--traces", &traces.to_string(), "--rate", "100"])
        .args(["--loss-rate", "0.1", "--loop-rate", "0.1", "--seed", &std::process::id().to_string()])
        .args(["--brokers", brokers, "--topic", topic, "--start", &start])
        .arg("--expected")
        .arg(dir.join("expected.ndjson"))
        .env("POIROT_LOG", "warn")
        .output()
        .expect("simulate runs");
    assert!(out.status.success(), "simulate: {}", String::from_utf8_lossy(&out.stderr));
}

/// simulate → SASL_SSL → `poirot run --out` → exactly the simulated anomalies.
fn round_trip(mechanism: &str, traces: usize, via: Via) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = mechanism.to_ascii_lowercase();
    let topic = format!("poirot-sec-{tag}-{}", std::process::id());
    let brokers = env("POIROT_TEST_KAFKA_SASL_SSL");
    let props = scram(mechanism, &env("POIROT_TEST_KAFKA_SCRAM_PASSWORD"));
    simulate(&brokers, &topic, traces, &props, via, dir.path());
    let expected = anomaly_keys(&dir.path().join("expected.ndjson"));
    assert!(expected.len() > traces / 20, "{} anomalies simulated", expected.len());

    let listen = format!("127.0.0.1:{}", free_port());
    let out = dir.path().join("out");
    let mut cmd = Command::new(POIROT);
    with_props(&mut cmd, &props, via, dir.path());
    cmd.args(["run", "--brokers", &brokers, "--topic", &topic, "--group", &format!("{topic}-group")])
        .args(["--listen", &listen])
        .arg("--out")
        .arg(&out)
        .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s")
        .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
        .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "1s")
        .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "3s")
        .env("POIROT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("run.log")).expect("log file"));
    let mut run = Proc(cmd.spawn().expect("poirot run starts"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&listen, "poirot_traces_closed_total") < traces as f64 {
        if let Some(status) = run.0.try_wait().expect("wait") {
            panic!("poirot run exited: {status:?}");
        }
        assert!(
            Instant::now() < deadline,
            "{mechanism}: not every trace closed within 60 s\n{}",
            diagnostics(&listen, &dir.path().join("run.log"))
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while anomaly_keys(&out.join("anomalies.ndjson")).len() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let found = anomaly_keys(&out.join("anomalies.ndjson"));
    if found != expected {
        eprintln!("{}", diagnostics(&listen, &dir.path().join("run.log")));
    }
    assert_same(&found, &expected, mechanism);
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn simulate_and_run_through_sasl_ssl_with_scram_sha_512_find_exactly_the_simulated_anomalies() {
    round_trip("SCRAM-SHA-512", 300, Via::File);
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn scram_sha_256_from_the_environment_works_too() {
    round_trip("SCRAM-SHA-256", 60, Via::Environment);
}

/// The only problem line of stderr (informational lines, such as the address the
/// page is served on, aside); fails when there is not exactly one, or a password shows.
fn one_line(what: &str, out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} succeeded: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.contains(" INFO ")).collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected:\n{text}");
    for secret in [WRONG_PASSWORD.to_owned(), env("POIROT_TEST_KAFKA_SCRAM_PASSWORD")] {
        assert!(!text.contains(&secret), "{what} shows a password: {text}");
    }
    lines[0].to_owned()
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn a_wrong_password_ends_run_and_simulate_with_one_line_naming_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = env("POIROT_TEST_KAFKA_SASL_SSL");
    let topic = format!("poirot-sec-wrong-{}", std::process::id());
    let props = scram("SCRAM-SHA-512", WRONG_PASSWORD);
    let listen = format!("127.0.0.1:{}", free_port());

    let mut run = Command::new(POIROT);
    with_props(&mut run, &props, Via::Environment, dir.path());
    run.args(["run", "--brokers", &brokers, "--topic", &topic, "--group", &format!("{topic}-group")])
        .args(["--listen", &listen])
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("POIROT_LOG", "info");
    let (out, took) = run_to_end(&mut run, Duration::from_secs(30));
    let line = one_line("poirot run", &out);
    assert!(line.contains("authentication failed") && line.contains(&brokers), "{line}");
    assert!(took < Duration::from_secs(30), "{took:?}");

    let mut sim = Command::new(POIROT);
    with_props(&mut sim, &props, Via::File, dir.path());
    sim.args(["simulate", "--traces", "5", "--brokers", &brokers, "--topic", &topic])
        .env("POIROT_LOG", "info");
    let (out, took) = run_to_end(&mut sim, Duration::from_secs(30));
    let line = one_line("poirot simulate", &out);
    assert!(line.contains("authentication failed") && line.contains(&brokers), "{line}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn the_ssl_listener_works_with_the_ca_and_fails_with_one_tls_line_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = env("POIROT_TEST_KAFKA_SSL");
    let topic = format!("poirot-sec-ssl-{}", std::process::id());
    let with_ca = BTreeMap::from([
        ("security.protocol", "SSL".to_owned()),
        ("ssl.ca.location", env("POIROT_TEST_KAFKA_CA")),
    ]);
    simulate(&brokers, &topic, 5, &with_ca, Via::Environment, dir.path());

    // Without the test CA the broker's certificate does not verify.
    let without_ca = BTreeMap::from([("security.protocol", "SSL".to_owned())]);
    let mut sim = Command::new(POIROT);
    with_props(&mut sim, &without_ca, Via::Environment, dir.path());
    sim.args(["simulate", "--traces", "5", "--brokers", &brokers, "--topic", &topic])
        .env("POIROT_LOG", "info");
    let (out, _) = run_to_end(&mut sim, Duration::from_secs(30));
    let line = one_line("poirot simulate", &out);
    assert!(line.contains("TLS handshake") && line.contains("certificate"), "{line}");
}

/// Forwards connections on `listener` to `target` (a broker's bootstrap address).
fn forward(listener: std::net::TcpListener, target: String) {
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(&target) else { continue };
            for (mut from, mut to) in
                [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_waits_for_an_unreachable_broker_with_one_line_per_try_then_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{}", free_port());
    let topic = format!("poirot-sec-wait-{}", std::process::id());
    let log = dir.path().join("stderr.log");
    let mut run = Proc(
        Command::new(POIROT)
            .args(["run", "--brokers", &brokers, "--topic", &topic, "--group", &format!("{topic}-group")])
            .args(["--listen", &listen])
            .arg("--out")
            .arg(dir.path().join("out"))
            .env("POIROT_KAFKA__REPARTITION", "never")
            .env("POIROT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("poirot run starts"),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(run.0.try_wait().expect("wait").is_none(), "poirot run gave up on an unreachable broker");
    let text = std::fs::read_to_string(&log).expect("stderr");
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" INFO ")).collect();
    assert!((1..=4).contains(&lines.len()), "one line per try, with backoff:\n{text}");
    assert!(lines.iter().all(|l| l.contains(&format!("cannot reach Kafka at {brokers}: "))), "{text}");
    // Alive, not ready, and saying why.
    let status = |path: &str| http::get(&format!("http://{listen}{path}")).map(|r| r.status).unwrap_or(0);
    assert_eq!(status("/healthz"), 200);
    let ready = http::get(&format!("http://{listen}/readyz")).expect("/readyz answers");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("kafka"), "{}", ready.body);

    // The broker comes (a forwarder to the real one on that address): poirot gets ready.
    let listener = std::net::TcpListener::bind(&brokers).expect("the broker's port is still free");
    forward(listener, env("POIROT_TEST_KAFKA"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while status("/readyz") != 200 {
        assert!(run.0.try_wait().expect("wait").is_none(), "poirot run exited");
        assert!(Instant::now() < deadline, "poirot run did not start once the broker answered");
        std::thread::sleep(Duration::from_millis(200));
    }
}
