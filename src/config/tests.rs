use super::*;
#[cfg(feature = "servers")]
use crate::sink::{elasticsearch::EsConfig, neo4j::Neo4jConfig, web_security::WebSecurity};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn defaults_match_the_design() {
    let c = Config::load(None, env(&[])).expect("defaults are valid");
    assert_eq!(c.assembly.inactivity_gap, Duration::from_secs(10));
    assert_eq!(c.assembly.out_of_orderness, Duration::from_secs(5));
    assert_eq!(c.anomalies.min_reentries, 2);
    assert_eq!(c.metrics.max_name_bytes, 256);
    assert_eq!(c.anomalies.limits(), crate::analysis::DocLimits::default());
    assert_eq!(c.anomalies.max_document_bytes, 65_536);
}

#[test]
fn caps_are_configurable_and_checked() {
    let c = Config::load(
        None,
        env(&[("POIROT_METRICS__MAX_NAME_BYTES", "64"), ("POIROT_ANOMALIES__MAX_LIST_ENTRIES", "10")]),
    )
    .expect("valid");
    assert_eq!((c.metrics.max_name_bytes, c.anomalies.max_list_entries), (64, 10));
    let e = Config::load(None, env(&[("POIROT_METRICS__MAX_NAME_BYTES", "8")])).expect_err("too small");
    assert!(e.to_string().contains("metrics.max_name_bytes"), "{e}");
    let e = Config::load(None, env(&[("POIROT_ANOMALIES__MAX_DOCUMENT_BYTES", "4096")]))
        .expect_err("names and summary would not fit");
    assert!(e.to_string().contains("anomalies.max_document_bytes"), "{e}");
    let e = Config::load(None, env(&[("POIROT_ANOMALIES__MAX_EVIDENCE_SPANS", "0")])).expect_err("zero");
    assert!(e.to_string().contains("anomalies.max_evidence_spans"), "{e}");
}

#[test]
fn environment_overrides_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("poirot.toml");
    std::fs::write(&p, "[assembly]\ninactivity_gap = \"20s\"\nmax_spans_per_trace = 10\n").expect("write");
    let c = Config::load(
        Some(&p),
        env(&[("POIROT_ASSEMBLY__INACTIVITY_GAP", "2s"), ("SIMULATE_S3_BEHAVIOUR", "ERROR"), ("HOME", "/x")]),
    )
    .expect("valid");
    assert_eq!(c.assembly.inactivity_gap, Duration::from_secs(2));
    assert_eq!(c.assembly.max_spans_per_trace, 10);
    assert_eq!(c.demo.s3_behaviour, S3Behaviour::Error);
}

#[test]
fn lists_come_from_the_environment_too() {
    let c = Config::load(
        None,
        env(&[
            ("POIROT_RED__DIMENSIONS", r#"["deployment.environment", "k8s.namespace.name"]"#),
            ("POIROT_SERVICE_GRAPH__VIRTUAL_NODE_PEER_ATTRIBUTES", r#"["server.address"]"#),
        ]),
    )
    .expect("valid");
    assert_eq!(c.red.dimensions, ["deployment.environment", "k8s.namespace.name"]);
    assert_eq!(c.service_graph.virtual_node_peer_attributes, ["server.address"]);
}

#[test]
fn errors_name_the_bad_key() {
    let e =
        Config::load(None, env(&[("POIROT_ASSEMBLY__INACTIVITY_GAP", "soon")])).expect_err("bad duration");
    let msg = e.to_string();
    assert!(msg.contains("assembly.inactivity_gap"), "{msg}");
    assert!(msg.contains("POIROT_ASSEMBLY__INACTIVITY_GAP"), "{msg}");
    let e = Config::load(None, env(&[("POIROT_ASSEMBLY__GAP", "1s")])).expect_err("unknown key");
    assert!(e.to_string().contains("unknown field `gap`"), "{e}");
    let e = Config::load(None, env(&[("POIROT_DEMO__PING_PONG_RATE", "1.5")])).expect_err("range");
    assert!(e.to_string().contains("demo.ping_pong_rate"), "{e}");
    let e = Config::load(None, env(&[("SIMULATE_S3_BEHAVIOUR", "SOMETIMES")])).expect_err("variant");
    assert!(e.to_string().contains("demo.s3_behaviour"), "{e}");
    let e = Config::load(None, env(&[("POIROT_KAFKA__REPARTITION", "sometimes")])).expect_err("variant");
    let msg = e.to_string();
    assert!(msg.contains("kafka.repartition") && msg.contains("`auto`, `always`, `never`"), "{msg}");
    let e = Config::load(None, env(&[("POIROT_KAFKA__ENCODING", "jaeger-ui")])).expect_err("not for Kafka");
    assert!(e.to_string().contains("kafka.encoding"), "{e}");
    let c = Config::load(None, env(&[("POIROT_KAFKA__ENCODING", "otlp-json")])).expect("valid");
    assert_eq!(c.kafka.encoding.format(), Some(crate::decode::Format::OtlpJson));
}

#[cfg(feature = "servers")]
#[test]
fn listener_settings_are_checked_at_start() {
    let e = Config::load(None, env(&[("POIROT_RUN__TLS_CERT", "/x/cert.pem")])).expect_err("no key");
    assert!(e.to_string().contains("run.tls_key"), "{e}");
    let e = Config::load(None, env(&[("POIROT_RUN__AUTH_USER", "alice")])).expect_err("no password");
    assert!(e.to_string().contains("run.auth_password"), "{e}");
    let e = Config::load(
        None,
        env(&[("POIROT_RUN__METRICS_TOKEN", "t"), ("POIROT_RUN__METRICS_TOKEN_FILE", "/f")]),
    )
    .expect_err("both");
    assert!(e.to_string().contains("not both"), "{e}");

    let missing = "/nonexistent/poirot/metrics_token";
    let c = Config::load(None, env(&[("POIROT_RUN__METRICS_TOKEN_FILE", missing)])).expect("valid");
    let e = WebSecurity::from_section(&c.run).expect_err("missing file");
    let line = e.to_string();
    assert!(line.contains("run.metrics_token_file") && line.contains(missing), "{line}");
    assert!(!line.contains('\n'), "{line}");
}

#[cfg(feature = "servers")]
#[test]
fn sink_tls_files_are_checked_at_start() {
    let missing = "/nonexistent/poirot/ca.pem";
    let c = Config::load(
        None,
        env(&[("POIROT_NEO4J__URI", "bolt+s://127.0.0.1:7687"), ("POIROT_NEO4J__CA_FILE", missing)]),
    )
    .expect("valid");
    let line = Neo4jConfig::from_section(&c.neo4j).expect_err("missing CA").to_string();
    assert!(line.contains("neo4j.ca_file") && line.contains(missing), "{line}");
    assert!(!line.contains('\n'), "{line}");
    let c = Config::load(
        None,
        env(&[("POIROT_NEO4J__URI", "127.0.0.1:7687"), ("POIROT_NEO4J__CA_FILE", missing)]),
    )
    .expect("valid");
    let line = Neo4jConfig::from_section(&c.neo4j).expect_err("plain bolt").to_string();
    assert!(line.contains("neo4j.ca_file") && line.contains("bolt+s://"), "{line}");

    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let junk = junk.display().to_string();
    let es = |pairs: &[(&str, &str)]| {
        let mut all = vec![("POIROT_ELASTICSEARCH__URL", "https://127.0.0.1:9200")];
        all.extend_from_slice(pairs);
        EsConfig::from_section(&Config::load(None, env(&all)).expect("valid").elasticsearch).map(|_| ())
    };
    let line = es(&[("POIROT_ELASTICSEARCH__CA_FILE", &junk)]).expect_err("no certificate").to_string();
    assert!(line.contains("elasticsearch.ca_file") && line.contains(&junk), "{line}");
    let line = es(&[("POIROT_ELASTICSEARCH__CLIENT_CERT", missing)]).expect_err("no key").to_string();
    assert!(line.contains("elasticsearch.client_key"), "{line}");
    let line =
        es(&[("POIROT_ELASTICSEARCH__CLIENT_CERT", missing), ("POIROT_ELASTICSEARCH__CLIENT_KEY", &junk)])
            .expect_err("missing certificate")
            .to_string();
    assert!(line.contains("elasticsearch.client_cert") && line.contains(missing), "{line}");
    let c = Config::load(
        None,
        env(&[
            ("POIROT_ELASTICSEARCH__URL", "http://127.0.0.1:9200"),
            ("POIROT_ELASTICSEARCH__CA_FILE", &junk),
        ]),
    )
    .expect("valid");
    let line = EsConfig::from_section(&c.elasticsearch).expect_err("plain http").to_string();
    assert!(line.contains("elasticsearch.ca_file") && line.contains("https://"), "{line}");
}

#[cfg(feature = "servers")]
#[test]
fn metrics_take_the_page_credentials_unless_they_have_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "page-token\n").expect("write");
    let page_file = token.display().to_string();
    let c = Config::load(None, env(&[("POIROT_RUN__AUTH_TOKEN_FILE", &page_file)])).expect("valid");
    let s = WebSecurity::from_section(&c.run).expect("readable");
    assert!(s.page.allows(Some(b"Bearer page-token")), "trimmed");
    assert!(!s.metrics.allows(None));
    assert!(s.metrics.allows(Some(b"Bearer page-token")));
    let c = Config::load(
        None,
        env(&[("POIROT_RUN__AUTH_TOKEN_FILE", &page_file), ("POIROT_RUN__METRICS_TOKEN", "scrape")]),
    )
    .expect("valid");
    let s = WebSecurity::from_section(&c.run).expect("readable");
    assert!(s.metrics.allows(Some(b"Bearer scrape")));
    assert!(!s.metrics.allows(Some(b"Bearer page-token")));
    assert!(!s.page.allows(Some(b"Bearer scrape")));
    let open = WebSecurity::from_section(&Config::default().run).expect("nothing to read");
    assert!(open.tls.is_none() && open.page.is_open() && open.metrics.is_open());
    std::fs::write(&token, "\n").expect("write");
    let e = WebSecurity::from_section(&c.run).expect_err("empty token file");
    assert!(e.to_string().contains("is empty"), "{e}");
}

#[test]
fn kafka_properties_come_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("poirot.toml");
    std::fs::write(
        &p,
        "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"linger.ms\" = 5\n\"enable.idempotence\" = true\n",
    )
    .expect("write");
    let c = Config::load(
        Some(&p),
        env(&[
            ("POIROT_KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512"),
            ("POIROT_KAFKA__PROPERTIES__SASL_PASSWORD", "1234"),
            ("POIROT_KAFKA__PROPERTIES__ssl.ca.location", "/ca.pem"),
            ("POIROT_KAFKA__TOPIC", "spans"),
        ]),
    )
    .expect("valid");
    let props: Vec<(&str, &str)> = c.kafka.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        props,
        [
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.password", "1234"),
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", "/ca.pem"),
        ]
    );
    assert_eq!(c.kafka.topic, "spans");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
    assert_eq!(parse_duration("-1s"), None);
    assert_eq!(parse_duration("1 fortnight"), None);
}

#[test]
fn errors_name_the_problem_in_a_persons_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let load = |text: &str| {
        let p = dir.path().join("poirot.toml");
        std::fs::write(&p, text).expect("write");
        Config::load(Some(&p), env(&[])).expect_err("invalid").to_string()
    };
    let e = load("[assembly]\ninactivity_gap = true\n");
    assert!(
        e.contains("assembly.inactivity_gap") && e.contains("boolean `true`, expected a duration"),
        "{e}"
    );
    assert!(!e.contains("untagged") && !e.contains("Raw"), "{e}");
    let e = load("[kafka.properties]\n\"linger.ms\" = [5]\n");
    assert!(e.contains("expected a string, a number or a bool") && !e.contains("Scalar"), "{e}");
    // TOML's snippet stays whole: the caret sits under the column the message names.
    let e = load("[assembly]\n  inactivity_gap = \"1s\n");
    let lines: Vec<&str> = e.lines().collect();
    let caret = lines.iter().find(|l| l.trim_start_matches([' ', '|']).starts_with('^')).expect("caret");
    let code = lines.iter().find(|l| l.starts_with("2 |")).expect("the line");
    assert_eq!(caret.find('^'), code.find("\"1s").map(|i| i + 3), "{e}");
    // The OS error comes once, as the source.
    let missing = Config::load(Some(&dir.path().join("nope.toml")), env(&[])).expect_err("missing");
    assert!(!missing.to_string().contains("os error"), "{missing}");
    assert!(std::error::Error::source(&missing).is_some());
    // A bare number is seconds, as documented.
    let c = Config::load(None, env(&[("POIROT_ASSEMBLY__INACTIVITY_GAP", "3")])).expect("valid");
    assert_eq!(c.assembly.inactivity_gap, Duration::from_secs(3));
}
