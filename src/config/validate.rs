//! The checks a configuration passes before anything starts: every value in
//! range, and the settings that only make sense together.

use super::*;

impl Config {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let a = &self.assembly;
        if a.inactivity_gap.is_zero() {
            return Err(("assembly.inactivity_gap", "must be greater than zero".into()));
        }
        if a.idle_timeout.is_zero() {
            return Err(("assembly.idle_timeout", "must be greater than zero".into()));
        }
        if a.max_spans_per_trace == 0 {
            return Err(("assembly.max_spans_per_trace", "must be at least 1".into()));
        }
        if a.max_buffered_spans < a.max_spans_per_trace {
            return Err(("assembly.max_buffered_spans", "must be at least max_spans_per_trace".into()));
        }
        if a.closed_retention.is_zero() {
            return Err(("assembly.closed_retention", "must be greater than zero".into()));
        }
        let ml = &self.message_loss;
        if ml.max_deadline < ml.min_deadline {
            return Err(("message_loss.max_deadline", "must be at least message_loss.min_deadline".into()));
        }
        if !(ml.latency_factor.is_finite() && ml.latency_factor >= 0.0) {
            return Err((
                "message_loss.latency_factor",
                format!("{} is not a number ≥ 0", ml.latency_factor),
            ));
        }
        if self.anomalies.min_reentries == 0 {
            return Err(("anomalies.min_reentries", "must be at least 1".into()));
        }
        if let Err(e) = self.red.check() {
            return Err(("red.dimensions", e));
        }
        if let Err(e) = self.service_graph.peer_attributes() {
            return Err(("service_graph.virtual_node_peer_attributes", e));
        }
        if self.anomalies.min_repeated_calls == 1 {
            return Err(("anomalies.min_repeated_calls", "must be 0 (off) or at least 2".into()));
        }
        let marker = crate::model::text::TRUNCATION_MARKER.len();
        let m = &self.metrics;
        if m.max_name_bytes < MIN_NAME_BYTES {
            return Err((
                "metrics.max_name_bytes",
                format!("must be at least {MIN_NAME_BYTES} (the cut marker alone is {marker} bytes)"),
            ));
        }
        let an = &self.anomalies;
        for (key, v) in [
            ("anomalies.max_evidence_spans", an.max_evidence_spans),
            ("anomalies.max_list_entries", an.max_list_entries),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if an.max_summary_bytes < MIN_NAME_BYTES {
            return Err(("anomalies.max_summary_bytes", format!("must be at least {MIN_NAME_BYTES}")));
        }
        // The fields no cap shortens (three names, the summary, ids and times)
        // must fit, even with every character escaped by JSON (up to 6 bytes).
        let floor = 6 * (3 * m.max_name_bytes + an.max_summary_bytes) + 1024;
        if an.max_document_bytes < floor {
            return Err((
                "anomalies.max_document_bytes",
                format!(
                    "must be at least {floor}: 6 × (3 × metrics.max_name_bytes + anomalies.max_summary_bytes) + 1024"
                ),
            ));
        }
        let d = &self.demo;
        if !(d.publisher_rate > 0.0 && d.publisher_rate <= 10_000.0) {
            return Err((
                "demo.publisher_rate",
                format!("{} is not in (0, 10000] workflows per second", d.publisher_rate),
            ));
        }
        for (key, v) in [
            ("demo.message_loss_rate", d.message_loss_rate),
            ("demo.ping_pong_rate", d.ping_pong_rate),
            ("demo.n_plus_one_rate", d.n_plus_one_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err((key, format!("{v} is not a probability in [0, 1]")));
            }
        }
        if d.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(("demo.listen", format!("{:?} is not an address like 127.0.0.1:8080", d.listen)));
        }
        if self.run.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "run.listen",
                format!("{:?} is not an address like 127.0.0.1:9464", self.run.listen),
            ));
        }
        let r = &self.run;
        match (r.tls_cert.is_empty(), r.tls_key.is_empty()) {
            (false, true) => return Err(("run.tls_key", "must be set with run.tls_cert".into())),
            (true, false) => return Err(("run.tls_cert", "must be set with run.tls_key".into())),
            _ => {}
        }
        for (value, file, key) in [
            (&r.auth_token, &r.auth_token_file, "run.auth_token_file"),
            (&r.auth_password, &r.auth_password_file, "run.auth_password_file"),
            (&r.metrics_token, &r.metrics_token_file, "run.metrics_token_file"),
            (&r.metrics_password, &r.metrics_password_file, "run.metrics_password_file"),
        ] {
            if !value.is_empty() && !file.is_empty() {
                let value_key = key.trim_end_matches("_file");
                return Err((key, format!("set either {value_key} or {key}, not both")));
            }
        }
        for (user, password, file, user_key, password_key) in [
            (&r.auth_user, &r.auth_password, &r.auth_password_file, "run.auth_user", "run.auth_password"),
            (
                &r.metrics_user,
                &r.metrics_password,
                &r.metrics_password_file,
                "run.metrics_user",
                "run.metrics_password",
            ),
        ] {
            let has_password = !password.is_empty() || !file.is_empty();
            if !user.is_empty() && !has_password {
                return Err((
                    password_key,
                    format!("{user_key} needs {password_key} or {password_key}_file"),
                ));
            }
            if user.is_empty() && has_password {
                return Err((user_key, format!("{password_key} needs {user_key}")));
            }
            if user.contains(':') {
                return Err((user_key, "a basic-auth user name cannot contain ':'".into()));
            }
        }
        let j = &self.jaeger_dependencies;
        if j.enabled && self.elasticsearch.url.is_empty() {
            return Err((
                "jaeger_dependencies.enabled",
                "needs elasticsearch.url: the documents go to Jaeger's Elasticsearch or OpenSearch".into(),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&j.bucket) {
            return Err(("jaeger_dependencies.bucket", format!("{:?} is not between 1s and 24h", j.bucket)));
        }
        let u = &self.ui.jaeger_url;
        if !u.is_empty() && !u.starts_with("http://") && !u.starts_with("https://") {
            return Err(("ui.jaeger_url", format!("{u:?} is not an http(s) URL")));
        }
        let t = &self.self_tracing;
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err((
                "self_tracing.sample_ratio",
                format!("{} is not a ratio in [0, 1]", t.sample_ratio),
            ));
        }
        if !t.endpoint.is_empty() && !t.endpoint.starts_with("http://") && !t.endpoint.starts_with("https://")
        {
            return Err(("self_tracing.endpoint", format!("{:?} is not an http(s) URL", t.endpoint)));
        }
        let k = &self.kafka;
        for (key, v) in [("kafka.brokers", &k.brokers), ("kafka.topic", &k.topic), ("kafka.group", &k.group)]
        {
            if v.trim().is_empty() {
                return Err((key, "must not be empty".into()));
            }
        }
        Ok(())
    }
}
