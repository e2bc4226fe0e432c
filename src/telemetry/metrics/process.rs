//! The standard `process_*` metrics (the names every Prometheus client library exports), read from
//! `/proc/self` at each scrape. Our own rather than the `prometheus` crate's `process` feature:
//! that feature brings `procfs` and a second `rustix`, 18 s of the release build, for eight numbers
//! from three small text files.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};

/// What `/proc/self/stat` tells, in the units the metrics use.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    threads: f64,
    start_seconds_after_boot: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(s: &str, ticks_per_second: f64, page_size: f64) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so field N is index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<f64>().ok();
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) / ticks_per_second,
        threads: num(20)?,
        start_seconds_after_boot: num(22)? / ticks_per_second,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page_size,
    })
}

/// The soft limit of a row of `/proc/self/limits`; `None` for "unlimited" or a missing row.
fn parse_limit(limits: &str, row: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with(row))?;
    line[row.len()..].split_whitespace().next()?.parse().ok()
}

/// Boot time, Unix seconds, from `/proc/stat`'s `btime` line.
fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

pub(super) struct ProcessCollector {
    descs: Vec<Desc>,
    ticks_per_second: f64,
    page_size: f64,
    boot_time: Option<f64>,
}

const FAMILIES: [(&str, &str, MetricType); 8] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::COUNTER,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::GAUGE,
    ),
    (
        "process_threads",
        "Number of OS threads in the process.",
        MetricType::GAUGE,
    ),
];

impl ProcessCollector {
    pub(super) fn for_self() -> Result<Self, prometheus::Error> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    vec![],
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            descs,
            ticks_per_second: rustix::param::clock_ticks_per_second() as f64,
            page_size: rustix::param::page_size() as f64,
            boot_time: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| parse_boot_time(&s)),
        })
    }

    /// This moment's values, by family; a value that cannot be read is left out, not made up.
    fn values(&self) -> [Option<f64>; 8] {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s, self.ticks_per_second, self.page_size));
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory handle being read is itself one of the descriptors.
            .map(|d| d.count().saturating_sub(1) as f64);
        [
            stat.map(|s| s.cpu_seconds),
            open_fds,
            parse_limit(&limits, "Max open files"),
            stat.map(|s| s.virtual_bytes),
            parse_limit(&limits, "Max address space"),
            stat.map(|s| s.resident_bytes),
            stat.zip(self.boot_time)
                .map(|(s, boot)| boot + s.start_seconds_after_boot),
            stat.map(|s| s.threads),
        ]
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        FAMILIES
            .iter()
            .zip(self.values())
            .filter_map(|((name, help, kind), value)| {
                let value = value?;
                let mut m = Metric::default();
                if *kind == MetricType::COUNTER {
                    let mut c = Counter::default();
                    c.set_value(value);
                    m.set_counter(c);
                } else {
                    let mut g = Gauge::default();
                    g.set_value(value);
                    m.set_gauge(g);
                }
                let mut mf = MetricFamily::default();
                mf.set_name(name.to_string());
                mf.set_help(help.to_string());
                mf.set_field_type(*kind);
                mf.set_metric(vec![m]);
                Some(mf)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a ")" in it, as a process may name itself.
        let line = "4242 (dw (x) y) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 7 0 \
                    123400 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_stat(line, 100.0, 4096.0).expect("parses");
        assert_eq!(
            s,
            Stat {
                cpu_seconds: 3.0,
                threads: 7.0,
                start_seconds_after_boot: 1234.0,
                virtual_bytes: 104_857_600.0,
                resident_bytes: 2560.0 * 4096.0,
            }
        );
        for bad in ["", "4242 (dw", "4242 (dw) S 1 2", "4242 (dw) S x y z"] {
            assert_eq!(parse_stat(bad, 100.0, 4096.0), None, "{bad:?}");
        }
    }

    #[test]
    fn limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n\
                      Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_limit(limits, "Max open files"), Some(1024.0));
        assert_eq!(parse_limit(limits, "Max address space"), None);
        assert_eq!(parse_limit(limits, "Max processes"), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764300000\nprocesses 9\n"),
            Some(1_764_300_000.0)
        );
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_reports_every_family() {
        let c = ProcessCollector::for_self().expect("descs");
        let families = c.collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for (name, ..) in FAMILIES {
            // Unlimited address space is the one value that may rightly be absent.
            if name != "process_virtual_memory_max_bytes" {
                assert!(names.contains(&name), "{name} missing from {names:?}");
            }
        }
        let rss = families
            .iter()
            .find(|f| f.name() == "process_resident_memory_bytes")
            .map(|f| f.get_metric()[0].get_gauge().get_value())
            .expect("rss");
        assert!(rss > 1_000_000.0, "resident memory {rss}");
        let start = families
            .iter()
            .find(|f| f.name() == "process_start_time_seconds")
            .map(|f| f.get_metric()[0].get_gauge().get_value())
            .expect("start");
        let now = chrono::Utc::now().timestamp() as f64;
        assert!(
            start > now - 86_400.0 * 365.0 && start <= now + 1.0,
            "start {start}"
        );
    }
}
