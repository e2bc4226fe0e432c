//! A labelled metric family stored compactly: the `prometheus` crate's vectors clone the whole
//! descriptor (name, help text, label names) into every series, about a kilobyte each, which for
//! 65 series per app was most of deploywatch's memory. A [`Family`] keeps one descriptor and, per
//! series, only its label values and a number, and is registered as a `prometheus` collector, so
//! gathering and encoding are unchanged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

#[derive(Debug)]
enum Cell {
    Value(f64),
    /// Per-bucket counts (not cumulative), the sum and the count of observations.
    Histogram(Box<[u64]>, f64, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// A handle: clones share the series (one is registered, one is written).
#[derive(Clone)]
pub(super) struct Family(Arc<Inner>);

struct Inner {
    desc: Desc,
    kind: Kind,
    buckets: Box<[f64]>,
    /// Label values, length-prefixed and concatenated, so a lookup needs one small key and no
    /// separator can collide with a value.
    series: Mutex<BTreeMap<Box<[u8]>, Cell>>,
}

fn key(values: &[&str]) -> Vec<u8> {
    let mut k = Vec::with_capacity(values.iter().map(|v| v.len() + 4).sum());
    for v in values {
        k.extend_from_slice(&(v.len() as u32).to_le_bytes());
        k.extend_from_slice(v.as_bytes());
    }
    k
}

fn values(mut k: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while k.len() >= 4 {
        let n = u32::from_le_bytes([k[0], k[1], k[2], k[3]]) as usize;
        let end = (4 + n).min(k.len());
        out.push(String::from_utf8_lossy(&k[4..end]).into_owned());
        k = &k[end..];
    }
    out
}

impl Family {
    /// `None` when the name, help or label names are invalid (a programming error the caller
    /// reports, see `registry.rs`).
    pub(super) fn new(
        name: String,
        help: &str,
        labels: &[&str],
        kind: Kind,
        buckets: &[f64],
    ) -> Option<Family> {
        let desc = Desc::new(
            name,
            help.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )
        .ok()?;
        Some(Family(Arc::new(Inner {
            desc,
            kind,
            buckets: buckets.into(),
            series: Mutex::new(BTreeMap::new()),
        })))
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<Box<[u8]>, Cell>) -> R) -> R {
        let mut s = self.0.series.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// The series' label values must be as many as the family's label names; a call with the wrong
    /// number is ignored (the `prometheus` crate would panic).
    fn arity_ok(&self, labels: &[&str]) -> bool {
        let ok = labels.len() == self.0.desc.variable_labels.len();
        debug_assert!(ok, "{}: wrong number of label values", self.0.desc.fq_name);
        ok
    }

    pub(super) fn set(&self, labels: &[&str], v: f64) {
        if !self.arity_ok(labels) {
            return;
        }
        let k = key(labels);
        self.with(|s| match s.get_mut(k.as_slice()) {
            Some(Cell::Value(x)) => *x = v,
            _ => {
                s.insert(k.into_boxed_slice(), Cell::Value(v));
            }
        });
    }

    pub(super) fn add(&self, labels: &[&str], v: f64) {
        if !self.arity_ok(labels) {
            return;
        }
        let k = key(labels);
        self.with(|s| match s.get_mut(k.as_slice()) {
            Some(Cell::Value(x)) => *x += v,
            _ => {
                s.insert(k.into_boxed_slice(), Cell::Value(v));
            }
        });
    }

    pub(super) fn inc(&self, labels: &[&str]) {
        self.add(labels, 1.0);
    }

    pub(super) fn observe(&self, labels: &[&str], v: f64) {
        if !self.arity_ok(labels) {
            return;
        }
        let i = self.0.buckets.iter().position(|b| v <= *b);
        let k = key(labels);
        let n = self.0.buckets.len();
        self.with(|s| {
            let cell = s
                .entry(k.into_boxed_slice())
                .or_insert_with(|| Cell::Histogram(vec![0; n].into(), 0.0, 0));
            if let Cell::Histogram(counts, sum, count) = cell {
                if let Some(i) = i {
                    counts[i] += 1;
                }
                *sum += v;
                *count += 1;
            }
        });
    }

    /// Sets the series to `v` unless it already holds more (a "last time" that must not go back).
    pub(super) fn set_max(&self, labels: &[&str], v: f64) {
        if !self.arity_ok(labels) {
            return;
        }
        let k = key(labels);
        self.with(|s| match s.get_mut(k.as_slice()) {
            Some(Cell::Value(x)) => *x = x.max(v),
            _ => {
                s.insert(k.into_boxed_slice(), Cell::Value(v));
            }
        });
    }

    /// Removes one series; true when it existed.
    pub(super) fn remove(&self, labels: &[&str]) -> bool {
        let k = key(labels);
        self.with(|s| s.remove(k.as_slice()).is_some())
    }

    /// The value of one series (gauges and counters).
    #[cfg(test)]
    pub(super) fn get(&self, labels: &[&str]) -> Option<f64> {
        let k = key(labels);
        self.with(|s| match s.get(k.as_slice()) {
            Some(Cell::Value(v)) => Some(*v),
            _ => None,
        })
    }

    fn metric(&self, k: &[u8], cell: &Cell) -> proto::Metric {
        let mut pairs: Vec<LabelPair> = self
            .0
            .desc
            .variable_labels
            .iter()
            .zip(values(k))
            .map(|(name, value)| {
                let mut p = LabelPair::default();
                p.set_name(name.clone());
                p.set_value(value);
                p
            })
            .collect();
        // Sorted by label name, as the `prometheus` crate writes them.
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        let mut m = proto::Metric::default();
        m.set_label(pairs);
        match (self.0.kind, cell) {
            (Kind::Gauge, Cell::Value(v)) => {
                let mut g = proto::Gauge::default();
                g.set_value(*v);
                m.set_gauge(g);
            }
            (Kind::Counter, Cell::Value(v)) => {
                let mut c = proto::Counter::default();
                c.set_value(*v);
                m.set_counter(c);
            }
            (_, Cell::Histogram(counts, sum, count)) => {
                let mut h = proto::Histogram::default();
                let mut cumulative = 0;
                let buckets = self
                    .0
                    .buckets
                    .iter()
                    .zip(counts.iter())
                    .map(|(ub, c)| {
                        cumulative += c;
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*ub);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect();
                h.set_bucket(buckets);
                h.set_sample_sum(*sum);
                h.set_sample_count(*count);
                m.set_histogram(h);
            }
            (_, Cell::Value(v)) => {
                let mut g = proto::Gauge::default();
                g.set_value(*v);
                m.set_gauge(g);
            }
        }
        m
    }
}

impl Collector for Family {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut mf = MetricFamily::default();
        mf.set_name(self.0.desc.fq_name.clone());
        mf.set_help(self.0.desc.help.clone());
        mf.set_field_type(match self.0.kind {
            Kind::Gauge => MetricType::GAUGE,
            Kind::Counter => MetricType::COUNTER,
            Kind::Histogram => MetricType::HISTOGRAM,
        });
        let metrics = self.with(|s| s.iter().map(|(k, c)| self.metric(k, c)).collect());
        mf.set_metric(metrics);
        vec![mf]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    /// The same writes through a `Family` and through the `prometheus` crate's own vectors give
    /// the same exposition.
    #[test]
    fn same_exposition_as_the_prometheus_vectors() {
        let ours = Registry::new();
        let theirs = Registry::new();
        let fam = |n: &str, k, b: &[f64]| {
            Family::new(n.into(), "Help.", &["x", "app"], k, b).expect("valid")
        };
        let c = fam("t_total", Kind::Counter, &[]);
        let g = fam("t_gauge", Kind::Gauge, &[]);
        let h = fam("t_seconds", Kind::Histogram, &[1.0, 10.0]);
        let pc = IntCounterVec::new(Opts::new("t_total", "Help."), &["x", "app"]).expect("v");
        let pg =
            prometheus::GaugeVec::new(Opts::new("t_gauge", "Help."), &["x", "app"]).expect("v");
        let ph = HistogramVec::new(
            HistogramOpts::new("t_seconds", "Help.").buckets(vec![1.0, 10.0]),
            &["x", "app"],
        )
        .expect("v");
        for (x, a) in [("b", "1"), ("a", "2"), ("a", "1"), ("a\"\n\\", "")] {
            c.inc(&[x, a]);
            c.add(&[x, a], 2.0);
            pc.with_label_values(&[x, a]).inc_by(3);
            g.set(&[x, a], 0.5);
            pg.with_label_values(&[x, a]).set(0.5);
            for v in [0.5, 5.0, 50.0] {
                h.observe(&[x, a], v);
                ph.with_label_values(&[x, a]).observe(v);
            }
        }
        assert!(g.remove(&["b", "1"]));
        assert!(!g.remove(&["b", "1"]));
        pg.remove_label_values(&["b", "1"]).expect("present");
        assert_eq!(c.get(&["a", "2"]), Some(3.0));
        // Wrong arity is ignored, never a panic (release builds; debug builds assert).
        if !cfg!(debug_assertions) {
            g.set(&["only-one"], 1.0);
        }
        ours.register(Box::new(c)).expect("r");
        ours.register(Box::new(g)).expect("r");
        ours.register(Box::new(h)).expect("r");
        theirs.register(Box::new(pc)).expect("r");
        theirs.register(Box::new(pg)).expect("r");
        theirs.register(Box::new(ph)).expect("r");
        let text = |r: &Registry| {
            let mut b = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&r.gather(), &mut b)
                .expect("encode");
            String::from_utf8(b).expect("utf8")
        };
        assert_eq!(text(&ours), text(&theirs));
    }

    #[test]
    fn keys_round_trip_any_value() {
        for vals in [vec![], vec![""], vec!["a", ""], vec!["\u{1f}", "\0", "ü"]] {
            assert_eq!(values(&key(&vals)), vals);
        }
    }
}
