//! The `/metrics` body, rendered once per change by one background thread and served from memory.
//!
//! Writers (a poll, a probe, a task change) bump a generation counter with [`Exposition::changed`].
//! A render thread, at a lower CPU priority than the threads serving requests, gathers the
//! families, encodes them (text, and OpenMetrics while clients ask for it, see [`encode`]) and
//! compresses each once ([`gzip`]); it renders at most once per [`MIN_INTERVAL`] for background
//! changes, at once for a change a client makes and then scrapes for
//! ([`Exposition::changed_now`]), and every [`NET`] while someone scrapes, the net under writers
//! that change a value without bumping. It renders nothing while nobody scrapes.
//!
//! A scrape takes the published render (a reference count, no copy) and this second's process
//! metrics (CPU, RSS, fds: small, refreshed at most once a second) and sends them as chunks; a
//! gzip scrape gets one gzip member framed around the cached compressed segments. A scrape waits
//! (at most [`WAIT`], then serves what there is) only for a change it must see: its client's own
//! write, or the first scrape after a pause in which the thread stopped rendering.
//!
//! Architecture Invariant: a scrape never gathers, encodes or compresses the shared families, and
//! never waits on a poll, the database or DigitalOcean.

pub mod encode;
pub mod gzip;
pub mod negotiate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::Registry;
use tokio::sync::watch;

pub use encode::Format;
pub use gzip::Encoded;
pub use negotiate::{accepts_gzip, format as negotiate_format};

/// Background changes are rendered at most this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// While scraped, a render is never older than this (the net under writers that forget to bump).
pub const NET: Duration = Duration::from_secs(5);
/// The longest a scrape waits for a render it must show before it serves the previous one.
pub const WAIT: Duration = Duration::from_secs(2);
/// Without a scrape for this long the thread stops rendering until the next one.
const ACTIVE: Duration = Duration::from_secs(120);
/// OpenMetrics is rendered while a client asked for it within this window.
const OPENMETRICS_WANTED: Duration = Duration::from_secs(600);
/// Process metrics (CPU seconds, RSS) are read at most this often.
const PROCESS_MAX_AGE: Duration = Duration::from_secs(1);

/// One render of the shared families.
#[derive(Debug)]
pub struct Rendered {
    pub generation: u64,
    pub at: Instant,
    pub text: Encoded,
    /// Present while a client asks for OpenMetrics.
    pub openmetrics: Option<Encoded>,
}

/// What one scrape sends.
pub struct Scrape {
    /// The format actually served (text when OpenMetrics was asked for but is not rendered yet).
    pub format: Format,
    pub gzip: bool,
    pub chunks: Vec<Bytes>,
    pub len: usize,
}

pub struct Exposition(Arc<Inner>);

struct Inner {
    shared: Registry,
    process: Registry,
    /// Bumped by every writer.
    generation: AtomicU64,
    /// The generation the next scrape must see (a client's own write, a scrape after a pause).
    required: AtomicU64,
    /// The generation a waiting scrape needs: the thread renders at once for it.
    wanted: AtomicU64,
    published: watch::Sender<Arc<Rendered>>,
    render_lock: Mutex<()>,
    started: Instant,
    /// Milliseconds since `started` of the last scrape and of the last OpenMetrics scrape (0: never).
    last_scrape_ms: AtomicU64,
    openmetrics_asked_ms: AtomicU64,
    process_cache: Mutex<[Option<(Instant, Encoded)>; 2]>,
    /// The render thread; absent when it could not start (scrapes then render inline).
    worker: OnceLock<std::thread::Thread>,
}

impl Exposition {
    /// `shared` holds every deploywatch family; `process` the per-scrape process metrics.
    pub fn new(shared: Registry, process: Registry) -> Exposition {
        let empty = Arc::new(Rendered {
            generation: 0,
            at: Instant::now(),
            text: Encoded::default(),
            openmetrics: None,
        });
        let inner = Arc::new(Inner {
            shared,
            process,
            generation: AtomicU64::new(1),
            // The first scrape waits for the first render.
            required: AtomicU64::new(1),
            wanted: AtomicU64::new(0),
            published: watch::Sender::new(empty),
            render_lock: Mutex::new(()),
            started: Instant::now(),
            last_scrape_ms: AtomicU64::new(0),
            openmetrics_asked_ms: AtomicU64::new(0),
            process_cache: Mutex::new([None, None]),
            worker: OnceLock::new(),
        });
        let weak = Arc::downgrade(&inner);
        if let Ok(h) = std::thread::Builder::new()
            .name("metrics-render".into())
            .spawn(move || run(&weak))
        {
            let _ = inner.worker.set(h.thread().clone());
        }
        Exposition(inner)
    }

    /// A background change (a poll, a probe): rendered within [`MIN_INTERVAL`].
    pub fn changed(&self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A change the next scrape must show (a client's own webhook post or task call).
    pub fn changed_now(&self) {
        let g = self.0.generation.fetch_add(1, Ordering::AcqRel) + 1;
        // No render yet: a burst of writes costs one render, made when a scrape asks.
        self.0.required.fetch_max(g, Ordering::AcqRel);
    }

    /// One scrape's body in `format` (gzip-framed when `gzip`).
    pub async fn scrape(&self, format: Format, gzip: bool) -> Scrape {
        let inner = &self.0;
        let now_ms = inner.ms();
        let previous_scrape = inner.last_scrape_ms.swap(now_ms, Ordering::AcqRel);
        if format == Format::OpenMetrics {
            inner.openmetrics_asked_ms.store(now_ms, Ordering::Release);
        }
        let mut r = inner.published.borrow().clone();
        let generation = inner.generation.load(Ordering::Acquire);
        // After a pause the thread stopped rendering: this scrape waits for current data. While
        // scrapes come, the thread keeps the render fresh and no scrape waits on it.
        let paused = (previous_scrape == 0
            || now_ms.saturating_sub(previous_scrape) >= ACTIVE.as_millis() as u64)
            && r.generation < generation;
        if paused {
            inner.required.fetch_max(generation, Ordering::AcqRel);
        }
        let need = inner.required.load(Ordering::Acquire);
        let wants_om = format == Format::OpenMetrics && r.openmetrics.is_none();
        if r.generation < need || wants_om {
            if inner.worker.get().is_none() {
                r = inner.render();
            } else {
                inner.wanted.fetch_max(need, Ordering::AcqRel);
                inner.wake();
                let mut rx = inner.published.subscribe();
                let ready = |x: &Arc<Rendered>| {
                    x.generation >= need && (format == Format::Text || x.openmetrics.is_some())
                };
                if let Ok(Ok(x)) = tokio::time::timeout(WAIT, rx.wait_for(ready)).await {
                    r = x.clone();
                }
            }
        }
        inner.assemble(&r, format, gzip)
    }

    /// Renders now on the calling thread (tests, benchmarks, the plain-text `render`).
    pub fn render_now(&self) -> Arc<Rendered> {
        self.0.render()
    }

    /// The whole text body as one buffer: the render thread's latest plus this moment's process
    /// metrics, rendered afresh if anything changed since.
    pub fn text(&self) -> Vec<u8> {
        let mut r = self.0.published.borrow().clone();
        if r.generation < self.0.generation.load(Ordering::Acquire) {
            r = self.0.render();
        }
        let s = self.0.assemble(&r, Format::Text, false);
        s.chunks.concat()
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        // The thread holds only a weak reference: woken, it finds the exposition gone and ends.
        self.0.wake();
    }
}

impl Inner {
    fn ms(&self) -> u64 {
        // Never 0, which means "never".
        self.started.elapsed().as_millis() as u64 + 1
    }

    fn recently(&self, at_ms: &AtomicU64, window: Duration) -> bool {
        let at = at_ms.load(Ordering::Acquire);
        at != 0 && self.ms().saturating_sub(at) < window.as_millis() as u64
    }

    fn wake(&self) {
        if let Some(t) = self.worker.get() {
            t.unpark();
        }
    }

    /// Gathers, encodes and compresses the shared families once; publishes and returns the render.
    fn render(&self) -> Arc<Rendered> {
        let _one = self.render_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Read the generation before gathering: a write during the render leaves it stale.
        let generation = self.generation.load(Ordering::Acquire);
        let previous = self.published.borrow().clone();
        let families = self.shared.gather();
        let mut text = Vec::with_capacity(previous.text.plain.len() + 4096);
        encode::families(Format::Text, &families, &mut text);
        let openmetrics = self
            .recently(&self.openmetrics_asked_ms, OPENMETRICS_WANTED)
            .then(|| {
                let mut om = Vec::with_capacity(text.len() + 4096);
                encode::families(Format::OpenMetrics, &families, &mut om);
                Encoded::new(om)
            });
        drop(families);
        let r = Arc::new(Rendered {
            generation,
            at: Instant::now(),
            text: Encoded::new(text),
            openmetrics,
        });
        drop(self.published.send_replace(r.clone()));
        drop(previous);
        // The gathered families and the previous render were freed in the middle of the heap;
        // left there they stayed resident between long-lived allocations.
        malloc_settings::release_free_memory();
        r
    }

    /// One step of the render thread: renders when due; returns how long to sleep.
    fn step(&self) -> Duration {
        let last = self.published.borrow().clone();
        let generation = self.generation.load(Ordering::Acquire);
        let wanted = self.wanted.load(Ordering::Acquire);
        let active = self.recently(&self.last_scrape_ms, ACTIVE);
        let om_missing = last.openmetrics.is_none()
            && self.recently(&self.openmetrics_asked_ms, OPENMETRICS_WANTED);
        let age = last.at.elapsed();
        let changed = last.generation < generation;
        let due = wanted > last.generation
            || (om_missing && active)
            || (active && changed && age >= MIN_INTERVAL)
            || (active && age >= NET);
        if due {
            self.render();
            return MIN_INTERVAL;
        }
        if !active {
            // Nothing to do until a scrape wakes the thread.
            return ACTIVE;
        }
        let until = if changed { MIN_INTERVAL } else { NET };
        until.saturating_sub(age).max(Duration::from_millis(10))
    }

    /// This second's process metrics in `format` (with the OpenMetrics `# EOF`).
    fn process_tail(&self, format: Format) -> Encoded {
        let slot = usize::from(format == Format::OpenMetrics);
        let mut cache = self.process_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, e)) = &cache[slot]
            && at.elapsed() < PROCESS_MAX_AGE
        {
            return e.clone();
        }
        let mut b = Vec::with_capacity(1024);
        encode::families(format, &self.process.gather(), &mut b);
        if format == Format::OpenMetrics {
            encode::eof(&mut b);
        }
        let e = Encoded::new(b);
        cache[slot] = Some((Instant::now(), e.clone()));
        e
    }

    fn assemble(&self, r: &Rendered, asked: Format, gzip: bool) -> Scrape {
        let (format, head) = match (asked, &r.openmetrics) {
            (Format::OpenMetrics, Some(om)) => (Format::OpenMetrics, om),
            _ => (Format::Text, &r.text),
        };
        let tail = self.process_tail(format);
        let (chunks, len) = if gzip {
            gzip::member(&[head, &tail])
        } else {
            let chunks = vec![head.plain.clone(), tail.plain.clone()];
            let len = head.plain.len() + tail.plain.len();
            (chunks, len)
        };
        Scrape {
            format,
            gzip,
            chunks,
            len,
        }
    }
}

/// The render thread: at a lower priority than request threads, so a render takes mostly CPU
/// the scrapes being served leave.
fn run(weak: &Weak<Inner>) {
    lower_priority();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let sleep = inner.step();
        drop(inner);
        std::thread::park_timeout(sleep);
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // Nice 10, not SCHED_IDLE: under SCHED_IDLE a render took the CPU only when nothing else
    // wanted it, so on a saturated machine (an alert storm) the body went stale by many seconds,
    // just when on-call reads it; at nice 10 a render still gets about a tenth of a busy core.
    // SCHED_IDLE did not shorten the scrape tail either (docs/BENCHMARKS.md). On Linux a thread
    // id names one thread: only the render thread's nice value changes.
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn fixture() -> (Exposition, prometheus::IntGauge) {
        let shared = Registry::new();
        let g = prometheus::IntGauge::new("deploywatch_test", "test").expect("valid");
        shared.register(Box::new(g.clone())).expect("unique");
        let process = Registry::new();
        let p = prometheus::IntGauge::new("process_fake", "per scrape").expect("valid");
        process.register(Box::new(p)).expect("unique");
        (Exposition::new(shared, process), g)
    }

    fn body(s: &Scrape) -> String {
        let all: Vec<u8> = s.chunks.concat();
        assert_eq!(all.len(), s.len);
        if !s.gzip {
            return String::from_utf8(all).expect("utf8");
        }
        let mut out = String::new();
        flate2::read::GzDecoder::new(&all[..])
            .read_to_string(&mut out)
            .expect("one valid gzip member");
        out
    }

    #[tokio::test]
    async fn the_first_scrape_shows_data_and_gzip_decodes_to_the_plain_body() {
        let (e, g) = fixture();
        g.set(7);
        let plain = e.scrape(Format::Text, false).await;
        let gz = e.scrape(Format::Text, true).await;
        assert!(body(&plain).contains("deploywatch_test 7\n"));
        assert!(body(&plain).contains("process_fake 0\n"));
        assert_eq!(body(&gz), body(&plain));
    }

    #[tokio::test]
    async fn a_clients_own_change_is_in_its_next_scrape() {
        let (e, g) = fixture();
        let _ = e.scrape(Format::Text, false).await;
        for v in 1..=20 {
            g.set(v);
            e.changed_now();
            let s = e.scrape(Format::Text, false).await;
            assert!(body(&s).contains(&format!("deploywatch_test {v}\n")), "{v}");
        }
    }

    #[tokio::test]
    async fn unchanged_data_is_served_from_the_same_render() {
        let (e, _g) = fixture();
        let _ = e.scrape(Format::Text, false).await;
        let a = e.0.published.borrow().clone();
        for _ in 0..50 {
            let _ = e.scrape(Format::Text, true).await;
        }
        assert!(Arc::ptr_eq(&a, &e.0.published.borrow().clone()));
    }

    #[tokio::test]
    async fn a_background_change_reaches_scrapes_within_the_interval() {
        let (e, g) = fixture();
        let _ = e.scrape(Format::Text, false).await;
        g.set(5);
        e.changed();
        let deadline = Instant::now() + MIN_INTERVAL * 5;
        loop {
            let s = e.scrape(Format::Text, false).await;
            if body(&s).contains("deploywatch_test 5\n") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the change never reached a scrape"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn openmetrics_when_asked_with_one_eof_at_the_very_end() {
        let (e, g) = fixture();
        g.set(3);
        let s = e.scrape(Format::OpenMetrics, true).await;
        assert_eq!(s.format, Format::OpenMetrics);
        let b = body(&s);
        assert!(b.contains("deploywatch_test 3\n"));
        assert!(b.ends_with("# EOF\n"), "{b}");
        assert_eq!(b.matches("# EOF").count(), 1);
        // Text clients are still served text.
        let t = e.scrape(Format::Text, false).await;
        assert!(!body(&t).contains("# EOF"));
    }
}
