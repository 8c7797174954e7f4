//! TLS to the sinks, against real servers: the harness's Neo4j with Bolt TLS (a test CA
//! made by `scripts/services/neo4j.sh`) and OpenSearch with its security plugin (HTTPS
//! only, basic auth or a client certificate; `scripts/services/opensearch-secure.sh`).
//!
//! `make test` brings the servers up and runs these with `--ignored`; by hand:
//! `scripts/services/services.sh up kafka neo4j opensearch-secure && . .cache/run/env &&
//! cargo test --test sink_tls -- --ignored --test-threads=1`.

mod common;

use common::http;
use common::servers::{env, free_port, metric, run_to_end, simulate_into, Proc};
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::{CountParts, Elasticsearch};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const POIROT: &str = env!("CARGO_BIN_EXE_poirot");
const WRONG_PASSWORD: &str = "not-the-password-7c41e2";

/// The harness's Neo4j over TLS: `bolt+s://` to its loopback address.
fn neo4j_tls_uri() -> String {
    format!("bolt+s://{}", env("POIROT_TEST_NEO4J"))
}

/// Neo4j's settings for a poirot command: over TLS, trusting `ca` if given.
fn neo4j_tls<'a>(cmd: &'a mut Command, ca: Option<&str>) -> &'a mut Command {
    cmd.env("POIROT_NEO4J__URI", neo4j_tls_uri())
        .env("POIROT_NEO4J__USER", env("POIROT_TEST_NEO4J_USER"))
        .env("POIROT_NEO4J__PASSWORD", env("POIROT_TEST_NEO4J_PASSWORD"));
    if let Some(ca) = ca {
        cmd.env("POIROT_NEO4J__CA_FILE", ca);
    }
    cmd
}

/// The secure OpenSearch's settings for `poirot run`, trusting `ca` if given.
fn search_tls<'a>(cmd: &'a mut Command, prefix: &str, ca: Option<&str>) -> &'a mut Command {
    cmd.env("POIROT_ELASTICSEARCH__URL", env("POIROT_TEST_OPENSEARCH_SECURE"))
        .env("POIROT_ELASTICSEARCH__INDEX_PREFIX", prefix);
    if let Some(ca) = ca {
        cmd.env("POIROT_ELASTICSEARCH__CA_FILE", ca);
    }
    cmd
}

fn basic_auth<'a>(cmd: &'a mut Command, password: &str) -> &'a mut Command {
    cmd.env("POIROT_ELASTICSEARCH__USERNAME", env("POIROT_TEST_OPENSEARCH_SECURE_USER"))
        .env("POIROT_ELASTICSEARCH__PASSWORD", password)
}

/// `poirot run` on `topic` of the harness's (plain) Kafka with short windows.
fn run_cmd(topic: &str, listen: &str) -> Command {
    let mut cmd = Command::new(POIROT);
    cmd.args(["run", "--brokers", &env("POIROT_TEST_KAFKA"), "--topic", topic])
        .args(["--group", &format!("{topic}-group"), "--listen", listen])
        .env("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s")
        .env("POIROT_MESSAGE_LOSS__MIN_DEADLINE", "3s")
        .env("POIROT_ASSEMBLY__OUT_OF_ORDERNESS", "1s")
        .env("POIROT_ASSEMBLY__IDLE_TIMEOUT", "3s")
        .env("POIROT_KAFKA__REPARTITION", "never");
    cmd
}

/// The only line of a failed command's stderr (run with POIROT_LOG=warn); fails when
/// there is not exactly one, or a password shows.
fn one_line(what: &str, out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} succeeded: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected:\n{text}");
    for secret in [
        WRONG_PASSWORD.to_owned(),
        env("POIROT_TEST_OPENSEARCH_SECURE_PASSWORD"),
        env("POIROT_TEST_NEO4J_PASSWORD"),
    ] {
        assert!(!text.contains(&secret), "{what} shows a password: {text}");
    }
    lines[0].to_owned()
}

/// Documents in the secure OpenSearch under `prefix`, read over HTTPS with the CA and
/// the test user (independently of poirot).
fn documents(prefix: &str) -> u64 {
    let url = env("POIROT_TEST_OPENSEARCH_SECURE").parse().expect("url");
    let ca = std::fs::read(env("POIROT_TEST_OPENSEARCH_SECURE_CA")).expect("the CA");
    let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .cert_validation(CertificateValidation::Full(Certificate::from_pem(&ca).expect("PEM")))
        .auth(Credentials::Basic(
            env("POIROT_TEST_OPENSEARCH_SECURE_USER"),
            env("POIROT_TEST_OPENSEARCH_SECURE_PASSWORD"),
        ))
        .build()
        .expect("transport");
    let client = Elasticsearch::new(transport);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let pattern = format!("{prefix}-*");
        let r = client.count(CountParts::Index(&[&pattern])).send().await.expect("count over HTTPS");
        if r.status_code().as_u16() == 404 {
            return 0;
        }
        let v: serde_json::Value = r.json().await.expect("json");
        v["count"].as_u64().unwrap_or(0)
    })
}

/// `poirot run` writes the dependency edges to Neo4j over Bolt TLS and the anomaly
/// documents to OpenSearch over HTTPS with basic auth, each trusting the test CA;
/// `poirot deps` reads the edges back over TLS.
#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn run_writes_to_neo4j_and_opensearch_over_tls_and_deps_reads_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = format!("poirot-sinktls-{}", std::process::id());
    let expected = dir.path().join("expected.ndjson");
    simulate_into(&topic, "40", "jaeger-proto", &expected);
    let anomalies = std::fs::read_to_string(&expected).expect("expected").lines().count() as u64;
    assert!(anomalies > 0, "the simulated traces have anomalies");

    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = run_cmd(&topic, &listen);
    neo4j_tls(&mut cmd, Some(&env("POIROT_TEST_NEO4J_CA")));
    search_tls(&mut cmd, &topic, Some(&env("POIROT_TEST_OPENSEARCH_SECURE_CA")));
    basic_auth(&mut cmd, &env("POIROT_TEST_OPENSEARCH_SECURE_PASSWORD"));
    let log = dir.path().join("run.log");
    cmd.env("POIROT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut run = Proc(cmd.spawn().expect("poirot run starts"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while documents(&topic) < anomalies || metric(&listen, "poirot_neo4j_finished_traces_total") < 40.0 {
        if let Some(status) = run.0.try_wait().expect("wait") {
            panic!("poirot run exited ({status:?}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "within 90 s: {} of {anomalies} documents, {} traces in Neo4j; {}",
            documents(&topic),
            metric(&listen, "poirot_neo4j_finished_traces_total"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(documents(&topic), anomalies, "each anomaly once");
    let ready = http::get(&format!("http://{listen}/readyz")).expect("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    drop(run);

    // The demo's classifier is called by the analysers: the edges are there, read over TLS.
    let mut deps = Command::new(POIROT);
    neo4j_tls(&mut deps, Some(&env("POIROT_TEST_NEO4J_CA")));
    let out = deps
        .args(["deps", "upstream", "Classificator", "--json"])
        .env("POIROT_LOG", "warn")
        .output()
        .expect("deps");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{rows}");
}

/// Without the CA, the server's certificate does not verify: `poirot deps` and `poirot
/// run` end at once with one line that names the TLS handshake and the certificate.
#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn neo4j_without_the_ca_fails_with_one_tls_line() {
    let mut deps = Command::new(POIROT);
    neo4j_tls(&mut deps, None).args(["deps", "downstream", "Classificator"]).env("POIROT_LOG", "warn");
    let (out, took) = run_to_end(&mut deps, Duration::from_secs(30));
    let line = one_line("poirot deps", &out);
    assert!(line.contains("TLS handshake failed") && line.contains("certificate"), "{line}");
    assert!(line.contains(&neo4j_tls_uri()) && line.contains("neo4j.ca_file"), "{line}");
    assert!(took < Duration::from_secs(10), "not retried: {took:?}");

    let topic = format!("poirot-sinktls-noca-{}", std::process::id());
    let mut run = run_cmd(&topic, &format!("127.0.0.1:{}", free_port()));
    neo4j_tls(&mut run, None).env("POIROT_LOG", "warn");
    let (out, took) = run_to_end(&mut run, Duration::from_secs(30));
    let line = one_line("poirot run", &out);
    assert!(line.contains("TLS handshake failed") && line.contains("certificate"), "{line}");
    assert!(took < Duration::from_secs(20), "not retried: {took:?}");
}

/// OpenSearch without the CA (TLS), or with a wrong password (401): `poirot run` ends
/// with one line.
#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn opensearch_without_the_ca_or_with_a_wrong_password_fails_with_one_line() {
    let topic = format!("poirot-sinktls-refused-{}", std::process::id());
    let mut run = run_cmd(&topic, &format!("127.0.0.1:{}", free_port()));
    search_tls(&mut run, &topic, None);
    basic_auth(&mut run, &env("POIROT_TEST_OPENSEARCH_SECURE_PASSWORD")).env("POIROT_LOG", "warn");
    let (out, took) = run_to_end(&mut run, Duration::from_secs(30));
    let line = one_line("poirot run without the CA", &out);
    assert!(line.contains("TLS handshake failed") && line.contains("certificate"), "{line}");
    assert!(line.contains("elasticsearch.ca_file"), "{line}");
    assert!(took < Duration::from_secs(20), "not retried: {took:?}");

    let mut run = run_cmd(&topic, &format!("127.0.0.1:{}", free_port()));
    search_tls(&mut run, &topic, Some(&env("POIROT_TEST_OPENSEARCH_SECURE_CA")));
    basic_auth(&mut run, WRONG_PASSWORD).env("POIROT_LOG", "warn");
    let (out, took) = run_to_end(&mut run, Duration::from_secs(30));
    let line = one_line("poirot run with a wrong password", &out);
    assert!(line.contains("401"), "{line}");
    assert!(took < Duration::from_secs(20), "not retried: {took:?}");
}

/// A client certificate instead of a password: OpenSearch's clientcert authenticator
/// takes its CN as the user, and poirot gets ready (the index template is written).
#[test]
#[ignore = "needs the real servers: `make test` starts them"]
fn opensearch_accepts_poirot_by_its_client_certificate() {
    let topic = format!("poirot-sinktls-mtls-{}", std::process::id());
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = run_cmd(&topic, &listen);
    search_tls(&mut cmd, &topic, Some(&env("POIROT_TEST_OPENSEARCH_SECURE_CA")))
        .env("POIROT_ELASTICSEARCH__CLIENT_CERT", env("POIROT_TEST_OPENSEARCH_SECURE_CLIENT_CERT"))
        .env("POIROT_ELASTICSEARCH__CLIENT_KEY", env("POIROT_TEST_OPENSEARCH_SECURE_CLIENT_KEY"))
        .env("POIROT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = Proc(cmd.spawn().expect("poirot run starts"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = run.0.try_wait().expect("wait") {
            panic!("poirot run exited: {status:?}");
        }
        if http::get(&format!("http://{listen}/readyz")).is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "not ready within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}
