//! Content negotiation for `/metrics`: which format (`Accept`) and whether gzip
//! (`Accept-Encoding`). Pure functions of the header values.

use super::encode::Format;

/// The format a client prefers: OpenMetrics only when it ranks it above the text format
/// (Prometheus does by default); text otherwise, and when no `Accept` is sent.
pub fn format<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
    let mut om = 0.0f32;
    let mut text = 0.0f32;
    let mut any = false;
    for range in accept.into_iter().flat_map(|h| h.split(',')) {
        any = true;
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = quality(parts);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if any && om > 0.0 && om > text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// True when an `Accept-Encoding` header value admits gzip (`gzip;q=0` refuses it).
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && quality(it) > 0.0
    })
}

/// The `q` parameter of a media range or coding; 1 when absent or unreadable.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    params
        .filter_map(|p| p.trim().strip_prefix("q="))
        .filter_map(|q| q.trim().parse::<f32>().ok())
        .find(|q| q.is_finite())
        .map(|q| q.clamp(0.0, 1.0))
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_table() {
        for (h, want) in [
            ("gzip", true),
            ("gzip, deflate", true),
            ("deflate, GZIP;q=0.5", true),
            ("identity", false),
            ("", false),
            ("gzip;q=0", false),
            ("gzip;q=0.0, br", false),
            ("*", true),
            ("br", false),
            ("gzip;q=nonsense", true),
        ] {
            assert_eq!(accepts_gzip(h), want, "{h:?}");
        }
    }

    #[test]
    fn accept_table() {
        use Format::*;
        for (h, want) in [
            // Prometheus 2.x default scrape Accept.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics,
            ),
            // Prometheus 3.x default.
            (
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                OpenMetrics,
            ),
            // Prometheus with scrape_protocols [PrometheusText0.0.4] only.
            ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", Text),
            ("text/plain", Text),
            ("*/*", Text),
            ("", Text),
            ("application/json", Text),
            ("application/openmetrics-text", OpenMetrics),
            ("application/openmetrics-text;q=0", Text),
            ("application/openmetrics-text;q=0.5, text/plain", Text),
            ("Application/OpenMetrics-Text; version=1.0.0", OpenMetrics),
        ] {
            assert_eq!(format([h]), want, "{h:?}");
        }
        assert_eq!(format(std::iter::empty()), Text);
    }
}
