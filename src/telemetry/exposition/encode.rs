//! Text exposition of gathered families, in the Prometheus text format 0.0.4 and in OpenMetrics
//! 1.0.0 (what Prometheus asks for first).
//!
//! One encoder for both: the formats differ only in escaping of `# HELP`, in the family name of
//! counters (OpenMetrics names the family without `_total`, the samples keep it), in the name of
//! untyped families and in the `# EOF` line, which [`eof`] writes once after the last family. The
//! text output is byte for byte what the `prometheus` crate's `TextEncoder` writes (a test holds it
//! to that), written straight into one buffer instead of a `String` per value.

use std::io::Write;

use prometheus::proto::{Metric, MetricFamily, MetricType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Appends `families` to `out` in `format` (without the OpenMetrics `# EOF`).
pub fn families(format: Format, families: &[MetricFamily], out: &mut Vec<u8>) {
    for mf in families {
        family(format, mf, out);
    }
}

/// The OpenMetrics terminator, once at the very end of a body.
pub fn eof(out: &mut Vec<u8>) {
    out.extend_from_slice(b"# EOF\n");
}

fn family(format: Format, mf: &MetricFamily, out: &mut Vec<u8>) {
    let name = mf.name();
    let kind = mf.get_field_type();
    let om = format == Format::OpenMetrics;
    // OpenMetrics: a counter family is named without `_total`; one without the suffix cannot be
    // written as a counter and goes out as `unknown` under its own name.
    let (family_name, type_name) = match (kind, om) {
        (MetricType::COUNTER, true) => match name.strip_suffix("_total") {
            Some(base) => (base, "counter"),
            None => (name, "unknown"),
        },
        (MetricType::COUNTER, false) => (name, "counter"),
        (MetricType::GAUGE, _) => (name, "gauge"),
        (MetricType::HISTOGRAM, _) => (name, "histogram"),
        (MetricType::SUMMARY, _) => (name, "summary"),
        (MetricType::UNTYPED, true) => (name, "unknown"),
        (MetricType::UNTYPED, false) => (name, "untyped"),
    };
    let help = mf.help();
    if !help.is_empty() {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(family_name.as_bytes());
        out.push(b' ');
        escape(help, om, out);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(family_name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(type_name.as_bytes());
    out.push(b'\n');
    for m in mf.get_metric() {
        match kind {
            MetricType::COUNTER => {
                sample(format, out, name, "", m, None, m.get_counter().get_value())
            }
            MetricType::GAUGE => sample(format, out, name, "", m, None, m.get_gauge().get_value()),
            #[allow(deprecated, reason = "the plain model still carries untyped values")]
            MetricType::UNTYPED => {
                sample(format, out, name, "", m, None, m.get_untyped().get_value())
            }
            MetricType::HISTOGRAM => {
                let h = m.get_histogram();
                let mut inf_seen = false;
                let mut le = String::new();
                for b in h.get_bucket() {
                    let ub = b.upper_bound();
                    inf_seen |= ub.is_infinite() && ub.is_sign_positive();
                    le.clear();
                    push_float(&mut le, ub);
                    sample(
                        format,
                        out,
                        name,
                        "_bucket",
                        m,
                        Some(("le", &le)),
                        b.cumulative_count() as f64,
                    );
                }
                if !inf_seen {
                    sample(
                        format,
                        out,
                        name,
                        "_bucket",
                        m,
                        Some(("le", "+Inf")),
                        h.get_sample_count() as f64,
                    );
                }
                sample(format, out, name, "_sum", m, None, h.get_sample_sum());
                sample(
                    format,
                    out,
                    name,
                    "_count",
                    m,
                    None,
                    h.get_sample_count() as f64,
                );
            }
            MetricType::SUMMARY => {
                let s = m.get_summary();
                let mut q = String::new();
                for quantile in s.get_quantile() {
                    q.clear();
                    push_float(&mut q, quantile.quantile());
                    sample(
                        format,
                        out,
                        name,
                        "",
                        m,
                        Some(("quantile", &q)),
                        quantile.value(),
                    );
                }
                sample(format, out, name, "_sum", m, None, s.sample_sum());
                sample(
                    format,
                    out,
                    name,
                    "_count",
                    m,
                    None,
                    s.sample_count() as f64,
                );
            }
        }
    }
}

fn sample(
    format: Format,
    out: &mut Vec<u8>,
    name: &str,
    suffix: &str,
    m: &Metric,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    let labels = m.get_label();
    if !labels.is_empty() || extra.is_some() {
        let mut sep = b'{';
        let pairs = labels.iter().map(|l| (l.name(), l.value())).chain(extra);
        for (k, v) in pairs {
            out.push(sep);
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"=\"");
            escape(v, true, out);
            out.push(b'"');
            sep = b',';
        }
        out.push(b'}');
    }
    out.push(b' ');
    write_float(out, value);
    let ts = m.timestamp_ms();
    if ts != 0 {
        out.push(b' ');
        // Text 0.0.4 takes milliseconds, OpenMetrics seconds.
        match format {
            Format::Text => {
                let _ = write!(out, "{ts}");
            }
            Format::OpenMetrics => write_float(out, ts as f64 / 1000.0),
        }
    }
    out.push(b'\n');
}

/// `\` → `\\`, newline → `\n` and, in label values and OpenMetrics help, `"` → `\"`.
fn escape(v: &str, quote: bool, out: &mut Vec<u8>) {
    for &b in v.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            _ => out.push(b),
        }
    }
}

fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{v}");
    }
}

fn push_float(s: &mut String, v: f64) {
    let mut b = Vec::new();
    write_float(&mut b, v);
    s.push_str(&String::from_utf8_lossy(&b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{
        Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
        TextEncoder,
    };

    fn registry() -> Registry {
        let r = Registry::new();
        let c = IntCounterVec::new(
            Opts::new("dw_requests_total", "Requests \\ by \"code\"\nsecond line."),
            &["code", "path"],
        )
        .expect("valid");
        c.with_label_values(&["200", "/a\"b\\c\nd"]).inc_by(3);
        c.with_label_values(&["500", ""]).inc();
        r.register(Box::new(c)).expect("unique");
        let g = IntGauge::new("dw_up", "Up.").expect("valid");
        g.set(-2);
        r.register(Box::new(g)).expect("unique");
        let bare = IntCounter::new("dw_restarts", "Counter without the suffix.").expect("valid");
        bare.inc();
        r.register(Box::new(bare)).expect("unique");
        let h = HistogramVec::new(
            HistogramOpts::new("dw_duration_seconds", "Durations.")
                .buckets(vec![0.5, 60.0, 3600.0]),
            &["app"],
        )
        .expect("valid");
        h.with_label_values(&["api"]).observe(0.25);
        h.with_label_values(&["api"]).observe(90.0);
        h.with_label_values(&["web"]).observe(4000.0);
        r.register(Box::new(h)).expect("unique");
        let f = prometheus::Gauge::new("dw_ratio", "A float.").expect("valid");
        f.set(0.1 + 0.2);
        r.register(Box::new(f)).expect("unique");
        r
    }

    #[test]
    fn text_is_what_the_prometheus_crate_writes() {
        let fams = registry().gather();
        let mut ours = Vec::new();
        families(Format::Text, &fams, &mut ours);
        let mut theirs = Vec::new();
        TextEncoder::new()
            .encode(&fams, &mut theirs)
            .expect("encode");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    #[test]
    fn openmetrics_names_counters_without_total_and_escapes_help_quotes() {
        let fams = registry().gather();
        let mut out = Vec::new();
        families(Format::OpenMetrics, &fams, &mut out);
        eof(&mut out);
        let s = String::from_utf8(out).expect("utf8");
        for want in [
            "# HELP dw_requests Requests \\\\ by \\\"code\\\"\\nsecond line.\n",
            "# TYPE dw_requests counter\n",
            "dw_requests_total{code=\"200\",path=\"/a\\\"b\\\\c\\nd\"} 3\n",
            "dw_requests_total{code=\"500\",path=\"\"} 1\n",
            "# TYPE dw_restarts unknown\ndw_restarts 1\n",
            "# TYPE dw_up gauge\ndw_up -2\n",
            "# TYPE dw_duration_seconds histogram\n",
            "dw_duration_seconds_bucket{app=\"api\",le=\"0.5\"} 1\n",
            "dw_duration_seconds_bucket{app=\"api\",le=\"+Inf\"} 2\n",
            "dw_duration_seconds_sum{app=\"web\"} 4000\n",
            "dw_duration_seconds_count{app=\"web\"} 1\n",
            "dw_ratio 0.30000000000000004\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        assert!(s.ends_with("# EOF\n"));
        assert_eq!(s.matches("# EOF").count(), 1);
    }

    #[test]
    fn special_floats() {
        for (v, want) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (1.5, "1.5"),
            (1e21, "1000000000000000000000"),
        ] {
            let mut b = Vec::new();
            write_float(&mut b, v);
            assert_eq!(String::from_utf8_lossy(&b), want);
        }
    }
}
