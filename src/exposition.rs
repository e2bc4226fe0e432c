//! The `/metrics` body, rendered once per change and served from memory.
//!
//! Writers (a poll, a probe, a task change) bump a generation counter with [`Exposition::changed`];
//! a scrape serves the cached text (and its gzip copy, compressed once per render) while the
//! generation is unchanged. A scrape that finds the cache stale renders it once, under a lock, so
//! concurrent scrapes of one generation share one render. Rendering only reads in-memory metric
//! objects: a scrape never waits on a poll, the database or DigitalOcean.
//!
//! Process metrics (CPU, RSS, open fds) change on every scrape, so they live in their own small
//! registry rendered per scrape and appended: as plain text, and as a second gzip member (RFC 1952
//! allows several members; Go's `gzip.Reader`, which Prometheus uses, reads them as one stream).
//!
//! Architecture Invariant: a scrape renders the shared families at most once per generation, and
//! a cached body is never older than [`MAX_AGE`] (the net under writers that forget to bump).
//!
//! Only the text format 0.0.4 is offered: the `prometheus` crate has no OpenMetrics encoder, and
//! Prometheus' default `Accept` header lists text 0.0.4 as an acceptable fallback, so it parses
//! the answer by its `Content-Type`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use prometheus::{Encoder, Registry, TextEncoder};

/// A cached body older than this is rendered again even if no writer bumped the generation.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// One render of the shared families.
pub struct Rendered {
    pub generation: u64,
    pub at: Instant,
    pub plain: Bytes,
    pub gzip: Bytes,
}

pub struct Exposition {
    shared: Registry,
    process: Registry,
    generation: AtomicU64,
    cache: RwLock<Option<Arc<Rendered>>>,
    render_lock: Mutex<()>,
}

/// What a scrape answers with.
pub struct Body {
    pub bytes: Vec<u8>,
    pub gzip: bool,
}

impl Exposition {
    /// `shared` holds every deploywatch family; `process` the per-scrape process metrics.
    pub fn new(shared: Registry, process: Registry) -> Exposition {
        Exposition {
            shared,
            process,
            generation: AtomicU64::new(1),
            cache: RwLock::new(None),
            render_lock: Mutex::new(()),
        }
    }

    /// Marks the cached body stale; the next scrape renders afresh.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn fresh(&self, want: u64) -> Option<Arc<Rendered>> {
        let c = self.cache.read().unwrap_or_else(|p| p.into_inner());
        c.as_ref()
            .filter(|r| r.generation >= want && r.at.elapsed() < MAX_AGE)
            .cloned()
    }

    /// The shared families for the current generation, rendering them at most once per generation.
    pub fn current(&self) -> Arc<Rendered> {
        let want = self.generation.load(Ordering::Acquire);
        if let Some(r) = self.fresh(want) {
            return r;
        }
        let _one = self.render_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = self.fresh(want) {
            return r;
        }
        // Read the generation before gathering: a write during the render leaves the cache stale.
        let generation = self.generation.load(Ordering::Acquire);
        let plain = encode(&self.shared, 256 * 1024);
        let gzip = gzip(&plain);
        let r = Arc::new(Rendered {
            generation,
            at: Instant::now(),
            plain: Bytes::from(plain),
            gzip: Bytes::from(gzip),
        });
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
        r
    }

    /// The whole body for one scrape: cached shared families plus this scrape's process metrics.
    pub fn body(&self, accept_gzip: bool) -> (Arc<Rendered>, Bytes) {
        let r = self.current();
        let process = encode(&self.process, 1024);
        let tail = if accept_gzip { gzip(&process) } else { process };
        (r, Bytes::from(tail))
    }
}

fn encode(registry: &Registry, capacity: usize) -> Vec<u8> {
    let families = registry.gather();
    let mut buf = Vec::with_capacity(capacity);
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&families, &mut buf);
    buf
}

fn gzip(plain: &[u8]) -> Vec<u8> {
    // Level 1: text metrics compress ~10x even at the fastest level, and the render stays cheap.
    let mut e = GzEncoder::new(
        Vec::with_capacity(plain.len() / 8 + 64),
        Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = e.write_all(plain);
    e.finish().unwrap_or_default()
}

/// True when an `Accept-Encoding` header value admits gzip (`gzip;q=0` refuses it).
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let refused = it.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn accept_encoding_table() {
        for (h, want) in [
            ("gzip", true),
            ("gzip, deflate", true),
            ("deflate, GZIP;q=0.5", true),
            ("identity", false),
            ("", false),
            ("gzip;q=0", false),
            ("*", true),
            ("br", false),
        ] {
            assert_eq!(accepts_gzip(h), want, "{h:?}");
        }
    }

    fn fixture() -> (Exposition, prometheus::IntGauge) {
        let shared = Registry::new();
        let g = prometheus::IntGauge::new("deploywatch_test", "test").expect("valid");
        shared.register(Box::new(g.clone())).expect("unique");
        (Exposition::new(shared, Registry::new()), g)
    }

    #[test]
    fn gzip_decodes_to_the_plain_body() {
        let (e, g) = fixture();
        g.set(7);
        let (r, _) = e.body(true);
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&r.gzip[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        assert_eq!(out, r.plain.to_vec());
        assert!(String::from_utf8_lossy(&out).contains("deploywatch_test 7"));
    }

    #[test]
    fn cached_until_changed() {
        let (e, g) = fixture();
        let a = e.current();
        g.set(3);
        // No bump: the cache is served as is (the same allocation).
        assert!(Arc::ptr_eq(&a, &e.current()));
        e.changed();
        let b = e.current();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(String::from_utf8_lossy(&b.plain).contains("deploywatch_test 3"));
    }
}
