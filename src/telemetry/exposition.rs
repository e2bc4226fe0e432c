//! The `/metrics` body, rendered once per change and served from memory.
//!
//! Writers (a poll, a probe, a task change) bump a generation counter with [`Exposition::changed`];
//! a scrape serves the cached text (and its gzip copy, compressed once per render) while the
//! generation is unchanged. After a background change (poll, probe) a scrape within [`COALESCE`]
//! of the last render answers from it at once and starts one render off the request path
//! (`spawn_blocking`, at most about two a second), so probe churn never puts a render in the
//! latency of frequent scrapes; a scrape after a longer gap renders once and shows current data. After a change a client makes and may
//! scrape for (a webhook post, a task call: [`Exposition::changed_now`]) the next scrape renders
//! once, under a lock shared by concurrent scrapes. Rendering only reads in-memory metric objects:
//! a scrape never waits on a poll, the database or DigitalOcean.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use prometheus::{Encoder, Registry, TextEncoder};

/// A cached body older than this is rendered again even if no writer bumped the generation.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// Within this age a render is served after a background change while a fresh one is made off
/// the request path; older, the scrape renders (once) so a 15 s scrape interval sees current data.
pub const COALESCE: Duration = Duration::from_secs(1);

/// One render of the shared families.
pub struct Rendered {
    pub generation: u64,
    pub at: Instant,
    pub plain: Bytes,
    pub gzip: Bytes,
}

pub struct Exposition(Arc<Inner>);

struct Inner {
    shared: Registry,
    process: Registry,
    /// Bumped by every writer.
    generation: AtomicU64,
    /// The generation a scrape must see: bumped by changes a client can observe and then scrape
    /// for (its own webhook post or task call).
    required: AtomicU64,
    cache: RwLock<Option<Arc<Rendered>>>,
    render_lock: Mutex<()>,
    rendering: AtomicBool,
}

impl Exposition {
    /// `shared` holds every deploywatch family; `process` the per-scrape process metrics.
    pub fn new(shared: Registry, process: Registry) -> Exposition {
        Exposition(Arc::new(Inner {
            shared,
            process,
            generation: AtomicU64::new(1),
            required: AtomicU64::new(0),
            cache: RwLock::new(None),
            render_lock: Mutex::new(()),
            rendering: AtomicBool::new(false),
        }))
    }

    /// A background change (a poll, a probe): the next scrape still gets the previous body at
    /// once and a render starts off the request path.
    pub fn changed(&self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A change the next scrape must show (a client's own webhook post or task call).
    pub fn changed_now(&self) {
        let g = self.0.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.0.required.fetch_max(g, Ordering::AcqRel);
    }

    /// The shared families, rendering them at most once per generation.
    pub fn current(&self) -> Arc<Rendered> {
        let want = self.0.generation.load(Ordering::Acquire);
        let need = self.0.required.load(Ordering::Acquire);
        if let Some(r) = self.0.cached() {
            if r.generation >= want {
                return r;
            }
            if r.generation >= need && r.at.elapsed() < COALESCE {
                // At most about two background renders a second however fast probes change
                // things: a render is CPU the scrapes being served would otherwise get.
                if r.at.elapsed() >= COALESCE / 2 {
                    self.render_in_background();
                }
                return r;
            }
        }
        self.0.render(Some(want))
    }

    fn render_in_background(&self) {
        if self.0.rendering.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.0.clone();
        let job = move || {
            inner.render(None);
            inner.rendering.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(job);
            }
            Err(_) => job(),
        }
    }

    /// The whole body for one scrape: cached shared families plus this scrape's process metrics.
    pub fn body(&self, accept_gzip: bool) -> (Arc<Rendered>, Bytes) {
        let r = self.current();
        let process = encode(&self.0.process, 1024);
        let tail = if accept_gzip { gzip(&process) } else { process };
        (r, Bytes::from(tail))
    }
}

impl Inner {
    /// The cached render unless it is older than [`MAX_AGE`].
    fn cached(&self) -> Option<Arc<Rendered>> {
        let c = self.cache.read().unwrap_or_else(|p| p.into_inner());
        c.as_ref().filter(|r| r.at.elapsed() < MAX_AGE).cloned()
    }

    /// Renders once under the lock; with `want`, a render another caller finished meanwhile serves.
    fn render(&self, want: Option<u64>) -> Arc<Rendered> {
        let _one = self.render_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(w), Some(r)) = (want, self.cached())
            && r.generation >= w
        {
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
        e.changed_now();
        let b = e.current();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(String::from_utf8_lossy(&b.plain).contains("deploywatch_test 3"));
    }

    #[test]
    fn a_background_change_serves_the_previous_body_once_then_the_new_one() {
        let (e, g) = fixture();
        let a = e.current();
        g.set(5);
        e.changed();
        // Within half the coalescing window the previous render serves and nothing renders.
        assert!(Arc::ptr_eq(&a, &e.current()));
        std::thread::sleep(COALESCE / 2);
        // Past it, still answered from the previous render; the render it started (inline: no
        // runtime here) serves the next scrape.
        assert!(Arc::ptr_eq(&a, &e.current()));
        let b = e.current();
        assert!(String::from_utf8_lossy(&b.plain).contains("deploywatch_test 5"));
    }
}
