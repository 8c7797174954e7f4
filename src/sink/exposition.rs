//! Writing metric families in the two formats Prometheus scrapes: the classic text
//! format 0.0.4 (what `metrics.prom` holds, and what `curl` gets) and OpenMetrics
//! 1.0 (what Prometheus asks for), which adds trace-id exemplars to histogram
//! buckets and ends with `# EOF`.
//!
//! Why not `prometheus-client`'s registry: poirot's series live in operator state
//! that is aggregated per span on the hot path and rendered at scrape time, and
//! that crate only emits exemplars from its own live metric objects (`Exemplar`
//! has no public constructor), so a collector over aggregated state could not
//! carry them. The format rules are small and are kept here, in one place.

pub use crate::analysis::red::ExemplarSlot;
use std::fmt::{Display, Write};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExpoFormat {
    /// Text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl ExpoFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExpoFormat::Text => "text/plain; version=0.0.4; charset=utf-8",
            ExpoFormat::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a scraper's `Accept` header asks for.
    pub fn negotiate(accept: Option<&str>) -> ExpoFormat {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => ExpoFormat::OpenMetrics,
            _ => ExpoFormat::Text,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A float sample value as both formats spell it: `+Inf`, `-Inf` and `NaN`
/// where Rust would write `inf` and `NaN`.
#[derive(Clone, Copy, Debug)]
pub struct Float(pub f64);

impl Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// A histogram sample set: bucket counts (not cumulative, the last one +Inf).
pub struct HistogramSample<'a> {
    pub bounds: &'a [f64],
    pub counts: &'a [f64],
    pub sum: f64,
    /// One slot per bucket; values are converted to the histogram's unit by `unit_per_us`.
    pub exemplars: Option<&'a [ExemplarSlot]>,
    pub unit_per_us: f64,
}

pub struct Exposition {
    format: ExpoFormat,
    out: String,
}

impl Exposition {
    pub fn new(format: ExpoFormat) -> Self {
        Exposition { format, out: String::with_capacity(8192) }
    }

    pub fn format(&self) -> ExpoFormat {
        self.format
    }

    /// Starts a family. Counter names are given with their `_total` suffix, as
    /// they are queried; OpenMetrics names the family without it.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let family = match (self.format, kind) {
            (ExpoFormat::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {family} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {family} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSample<'_>) {
        let mut cumulative = 0f64;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = match h.bounds.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".to_owned(),
            };
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = write!(self.out, " {}", Float(cumulative));
            if let (ExpoFormat::OpenMetrics, Some(slot)) =
                (self.format, h.exemplars.and_then(|e| e.get(i)).filter(|s| s.is_set()))
            {
                let _ = write!(
                    self.out,
                    " # {{trace_id=\"{}\"}} {}",
                    slot.trace_id,
                    slot.value_us as f64 * h.unit_per_us
                );
            }
            self.out.push('\n');
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", Float(h.sum));
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", Float(cumulative));
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            let _ = write!(self.out, "{k}=\"");
            escape_label_into(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// The families written so far, without the OpenMetrics terminator.
    pub fn into_body(self) -> String {
        self.out
    }

    pub fn finish(mut self) -> String {
        if self.format == ExpoFormat::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// The text format 0.0.4 of an OpenMetrics exposition: counter families take their
/// samples' `_total` name, exemplars, `# UNIT` lines and `# EOF` go. Serves scrapers
/// that ask for text without rendering every series twice.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let counters: std::collections::HashSet<&str> =
        om.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let counter_family = |name: &str| counters.contains(name);
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        match meta {
            Some((what, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counter_family(name) && !name.ends_with("_total") {
                    let _ = writeln!(out, "# {what} {name}_total {tail}");
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                // An exemplar follows the value after " # ".
                out.push_str(line.split_once(" # ").map_or(line, |(sample, _)| sample));
                out.push('\n');
            }
        }
    }
    out
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TraceId;

    #[test]
    fn floats_are_spelled_as_the_formats_say() {
        let shown: Vec<String> = [1.0, 2.5, 1e21, f64::INFINITY, f64::NEG_INFINITY, f64::NAN]
            .iter()
            .map(|v| Float(*v).to_string())
            .collect();
        assert_eq!(shown, ["1", "2.5", "1000000000000000000000", "+Inf", "-Inf", "NaN"]);
    }

    fn sample_histogram(format: ExpoFormat) -> String {
        let mut e = Exposition::new(format);
        e.family("latency_seconds", Kind::Histogram, "Latency.");
        let trace_id = TraceId::from_hex("00000000000000000000000000abcdef").expect("hex");
        let exemplars = [ExemplarSlot::default(), ExemplarSlot { trace_id, value_us: 1_500_000 }];
        e.histogram(
            "latency_seconds",
            &[("svc", "a\"b")],
            &HistogramSample {
                bounds: &[1.0],
                counts: &[2.0, 1.0],
                sum: 2.5,
                exemplars: Some(&exemplars),
                unit_per_us: 1e-6,
            },
        );
        e.family("requests_total", Kind::Counter, "Requests.");
        e.sample("requests_total", &[], 3);
        e.finish()
    }

    #[test]
    fn openmetrics_carries_exemplars_and_ends_with_eof() {
        let om = sample_histogram(ExpoFormat::OpenMetrics);
        assert!(om.contains("latency_seconds_bucket{svc=\"a\\\"b\",le=\"1\"} 2\n"), "{om}");
        assert!(
            om.contains("latency_seconds_bucket{svc=\"a\\\"b\",le=\"+Inf\"} 3 # {trace_id=\"00000000000000000000000000abcdef\"} 1.5\n"),
            "{om}"
        );
        assert!(om.contains("latency_seconds_count{svc=\"a\\\"b\"} 3\n"), "{om}");
        assert!(om.contains("# TYPE requests counter\nrequests_total 3\n"), "{om}");
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn text_format_has_no_exemplars() {
        let text = sample_histogram(ExpoFormat::Text);
        assert!(!text.contains('#') || !text.contains("trace_id"), "{text}");
        assert!(text.contains("# TYPE requests_total counter\n"), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn text_derived_from_openmetrics_equals_text_rendered_directly() {
        let om = sample_histogram(ExpoFormat::OpenMetrics);
        assert_eq!(openmetrics_to_text(&om), sample_histogram(ExpoFormat::Text));
    }

    #[test]
    fn negotiates_from_accept() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(ExpoFormat::negotiate(Some(prometheus)), ExpoFormat::OpenMetrics);
        assert_eq!(ExpoFormat::negotiate(Some("*/*")), ExpoFormat::Text);
        assert_eq!(ExpoFormat::negotiate(None), ExpoFormat::Text);
    }
}
