//! The HTTP listener's protections and readiness, against real processes: a
//! `poirot demo` with TLS (a CA and a server certificate made here) and tokens
//! or basic credentials, `/readyz` of a server whose sink fails, and `poirot
//! healthcheck`'s exit status for each.

mod common;

use common::http::{self, Options};
use poirot::sink::web;
use poirot::sink::web_security::WebSecurity;
use poirot::telemetry::health::{Component, Health};
use poirot::telemetry::process::ProcessMetrics;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A CA and a server certificate it signed for localhost and 127.0.0.1, as PEM.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "poirot");
    let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("server certificate");
    Pki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write");
    p.display().to_string()
}

/// A child process killed when the test ends, passed or not.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `poirot demo` on `port` with `env`.
fn demo(port: u16, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poirot"));
    cmd.args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--duration", "120"])
        .env("POIROT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().expect("demo starts"))
}

/// Waits until `url` answers 200.
fn wait_for(url: &str, options: Options<'_>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http::get_with(url, options).is_ok_and(|r| r.status == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not answer 200 within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn healthcheck(port: u16, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poirot"));
    cmd.args(["healthcheck", "--addr", &format!("127.0.0.1:{port}")]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("healthcheck runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn https_with_a_token_for_the_page_and_another_for_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki("poirot");
    let cert = write(dir.path(), "cert.pem", &pki.cert_pem);
    let key = write(dir.path(), "key.pem", &pki.key_pem);
    let page_token = write(dir.path(), "page_token", "page-0123456789abcdef\n");
    let metrics_token = write(dir.path(), "metrics_token", "scrape-fedcba9876543210");
    let env = [
        ("POIROT_RUN__TLS_CERT", cert.as_str()),
        ("POIROT_RUN__TLS_KEY", key.as_str()),
        ("POIROT_RUN__AUTH_TOKEN_FILE", page_token.as_str()),
        ("POIROT_RUN__METRICS_TOKEN_FILE", metrics_token.as_str()),
    ];
    let port = free_port();
    let _demo = demo(port, &env);
    let base = format!("https://127.0.0.1:{port}");
    let with_ca =
        |headers: &'static [(&'static str, &'static str)]| Options { ca_pem: Some(&pki.ca_pem), headers };
    wait_for(&format!("{base}/healthz"), with_ca(&[]));

    // Liveness and readiness are open; the demo is always ready.
    let ready = http::get_with(&format!("{base}/readyz"), with_ca(&[])).expect("readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let report: serde_json::Value = serde_json::from_str(&ready.body).expect("JSON report");
    assert_eq!(report["ready"], true, "{report}");

    // Plain HTTP gets no HTTP answer; a client trusting another CA fails the handshake.
    let plain = http::get(&format!("http://127.0.0.1:{port}/healthz"));
    assert!(
        !plain.as_ref().is_ok_and(|r| r.status != 0),
        "plain HTTP was answered: {:?}",
        plain.map(|r| r.head)
    );
    let other = make_pki("other");
    let stranger =
        http::get_with(&format!("{base}/healthz"), Options { ca_pem: Some(&other.ca_pem), headers: &[] });
    assert!(stranger.is_err(), "a certificate of another CA was accepted");

    const PAGE: &[(&str, &str)] = &[("Authorization", "Bearer page-0123456789abcdef")];
    const METRICS: &[(&str, &str)] = &[("Authorization", "Bearer scrape-fedcba9876543210")];
    const WRONG: &[(&str, &str)] = &[("Authorization", "Bearer page-0123456789abcdeF")];
    for path in ["/", "/api/snapshot", "/graph.svg"] {
        let url = format!("{base}{path}");
        let none = http::get_with(&url, with_ca(&[])).expect("answer");
        assert_eq!(none.status, 401, "{path} without a token");
        assert_eq!(none.header("www-authenticate"), vec!["Bearer realm=\"poirot\""], "{}", none.head);
        assert!(!none.body.contains("poirot_") && !none.body.contains("<svg"), "{path}: {}", none.body);
        assert_eq!(http::get_with(&url, with_ca(WRONG)).expect("answer").status, 401, "{path} wrong token");
        assert_eq!(
            http::get_with(&url, with_ca(METRICS)).expect("answer").status,
            401,
            "{path} metrics token"
        );
        let ok = http::get_with(&url, with_ca(PAGE)).expect("answer");
        assert_eq!(ok.status, 200, "{path} with the page token");
        assert!(!ok.body.is_empty());
    }
    let page = http::get_with(&format!("{base}/"), with_ca(PAGE)).expect("page");
    assert!(page.body.contains("<title>poirot</title>"));

    let metrics = format!("{base}/metrics");
    assert_eq!(http::get_with(&metrics, with_ca(&[])).expect("answer").status, 401);
    assert_eq!(http::get_with(&metrics, with_ca(PAGE)).expect("answer").status, 401, "the page token");
    let scraped = http::get_with(&metrics, with_ca(METRICS)).expect("metrics");
    assert_eq!(scraped.status, 200);
    assert!(scraped.body.contains("poirot_build_info{"), "{}", scraped.body);

    // The healthcheck reads the same settings: TLS, trusting the listener's own certificate.
    let ok = healthcheck(port, &env, &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let live = healthcheck(port, &env, &["--live"]);
    assert!(live.status.success(), "{}", stderr(&live));
    // Without them it speaks plain HTTP and fails; with another certificate it does not trust the server.
    let plain = healthcheck(port, &[], &[]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(stderr(&plain).contains(&format!("127.0.0.1:{port}/readyz")), "{}", stderr(&plain));
    let other_cert = write(dir.path(), "other.pem", &other.cert_pem);
    let other_env = [("POIROT_RUN__TLS_CERT", other_cert.as_str()), ("POIROT_RUN__TLS_KEY", key.as_str())];
    let mistrust = healthcheck(port, &other_env, &[]);
    assert_eq!(mistrust.status.code(), Some(1));
    assert!(stderr(&mistrust).contains("not the one in run.tls_cert"), "{}", stderr(&mistrust));
}

#[test]
fn basic_credentials_over_plain_http_also_guard_metrics_without_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = write(dir.path(), "password", "correct horse battery staple\n");
    let env = [("POIROT_RUN__AUTH_USER", "alice"), ("POIROT_RUN__AUTH_PASSWORD_FILE", password.as_str())];
    let port = free_port();
    let _demo = demo(port, &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{base}/healthz"), Options::default());
    assert_eq!(http::get(&format!("{base}/readyz")).expect("readyz").status, 200);

    // base64("alice:correct horse battery staple") and a wrong password.
    const RIGHT: &[(&str, &str)] =
        &[("Authorization", "Basic YWxpY2U6Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==")];
    const WRONG: &[(&str, &str)] = &[("Authorization", "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==")];
    for path in ["/", "/api/snapshot", "/metrics"] {
        let url = format!("{base}{path}");
        let none = http::get(&url).expect("answer");
        assert_eq!(none.status, 401, "{path}");
        assert!(none.header("www-authenticate").iter().any(|c| c.starts_with("Basic realm=\"poirot\"")));
        let opts = |headers| Options { ca_pem: None, headers };
        assert_eq!(http::get_with(&url, opts(WRONG)).expect("answer").status, 401, "{path}");
        assert_eq!(http::get_with(&url, opts(RIGHT)).expect("answer").status, 200, "{path}");
    }
    let ok = healthcheck(port, &env, &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// Serves `health` on a free port in this process until the returned notifier fires.
fn serve(health: Health) -> (u16, Arc<tokio::sync::Notify>, std::thread::JoinHandle<anyhow::Result<()>>) {
    let shared = web::shared("run", ProcessMetrics::new(), health);
    let done = Arc::new(tokio::sync::Notify::new());
    let (tx, rx) = std::sync::mpsc::channel();
    let until = web::Until { duration: Some(Duration::from_secs(120)), pipeline_done: done.clone() };
    let server = std::thread::spawn(move || {
        web::serve("127.0.0.1:0".parse().expect("addr"), shared, WebSecurity::default(), until, |bound| {
            let _ = tx.send(bound.port());
        })
    });
    let port = rx.recv_timeout(Duration::from_secs(10)).expect("listening");
    (port, done, server)
}

#[test]
fn readyz_and_healthcheck_name_the_failing_component() {
    let health = Health::new();
    health.ok(Component::Kafka);
    health.failing(Component::Elasticsearch, "bulk request refused: 401 Unauthorized");
    health.register(Component::Neo4j);
    let (port, done, server) = serve(health.clone());
    let base = format!("http://127.0.0.1:{port}");

    let r = http::get(&format!("{base}/readyz")).expect("readyz");
    assert_eq!(r.status, 503, "{}", r.body);
    let report: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(report["ready"], false);
    assert_eq!(report["components"]["kafka"]["state"], "ok");
    assert_eq!(report["components"]["neo4j"]["state"], "starting");
    assert_eq!(report["components"]["elasticsearch"]["state"], "failing");
    assert_eq!(report["components"]["elasticsearch"]["reason"], "bulk request refused: 401 Unauthorized");
    assert_eq!(http::get(&format!("{base}/healthz")).expect("healthz").status, 200, "alive all the same");

    let not_ready = healthcheck(port, &[], &[]);
    assert_eq!(not_ready.status.code(), Some(1));
    let line = stderr(&not_ready);
    assert!(
        line.contains(&format!("poirot at 127.0.0.1:{port} is not ready: elasticsearch failing for ")),
        "{line}"
    );
    assert!(line.contains("401 Unauthorized; neo4j starting"), "{line}");
    assert_eq!(line.trim_end().lines().count(), 1, "{line}");
    assert!(healthcheck(port, &[], &["--live"]).status.success(), "alive");

    health.ok(Component::Neo4j);
    health.ok(Component::Elasticsearch);
    let r = http::get(&format!("{base}/readyz")).expect("readyz");
    assert_eq!(r.status, 200, "{}", r.body);
    let ready = healthcheck(port, &[], &[]);
    assert!(ready.status.success(), "{}", stderr(&ready));

    done.notify_one();
    server.join().expect("server thread").expect("server stops cleanly");
    let gone = healthcheck(port, &[], &[]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("not listening"), "{}", stderr(&gone));
}

#[test]
fn a_missing_secret_or_key_file_stops_the_start_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki("poirot");
    let cert = write(dir.path(), "cert.pem", &pki.cert_pem);
    let missing = dir.path().join("nonexistent").display().to_string();
    for (env, key) in [
        (vec![("POIROT_RUN__METRICS_TOKEN_FILE", missing.as_str())], "run.metrics_token_file"),
        (vec![("POIROT_RUN__AUTH_TOKEN_FILE", missing.as_str())], "run.auth_token_file"),
        (
            vec![("POIROT_RUN__TLS_CERT", cert.as_str()), ("POIROT_RUN__TLS_KEY", missing.as_str())],
            "run.tls_key",
        ),
        (
            vec![("POIROT_RUN__TLS_CERT", missing.as_str()), ("POIROT_RUN__TLS_KEY", cert.as_str())],
            "run.tls_cert",
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_poirot"));
        cmd.args(["demo", "--listen", &format!("127.0.0.1:{}", free_port()), "--duration", "5"]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("demo runs");
        assert_eq!(out.status.code(), Some(1), "{env:?}");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(key) && err.contains(&missing), "{err}");
    }
}
