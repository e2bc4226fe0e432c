//! glibc malloc settings for a long-running server with few threads and large, short-lived
//! buffers (deploywatch renders a `/metrics` body of megabytes about once a second).
//!
//! With glibc's defaults, each thread that allocates may get its own arena, and after the first
//! large buffer is freed the threshold above which buffers are mapped on their own rises to that
//! buffer's size, so later renders are carved out of an arena and their freed space stays resident
//! between fragments. Measured with 200 apps (docs/BENCHMARKS.md, "Memory"): 39.7 MiB resident
//! with the defaults; 30.4 MiB with two arenas, a fixed 64 KiB mapping threshold, a 128 KiB trim
//! threshold and [`release_free_memory`] after each render. Four arenas (the main thread's and
//! one each for the three busy threads: the request thread, the render thread and sqlx's SQLite
//! thread), not fewer: glibc gives each thread an arena at its first allocation and keeps it, so
//! threads beyond the limit share one and wait on its lock. With one arena, the request thread and
//! the render thread took turns on it, and two of the eight `/metrics` latency rows went above
//! twice nginx's; with two, the request thread and the SQLite thread often shared one under
//! webhook ingest: about one futex wait per notification on the request thread, and 5% fewer
//! notifications/s than with four (docs/BENCHMARKS.md, "Webhook ingest", session 12). The 200-app
//! resident figure did not move (25.4 MiB with two arenas, 25.7 with four).
//!
//! The settings are glibc's own `mallopt` parameters; anything the operator set through glibc's
//! environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
//! `GLIBC_TUNABLES`) is left as they set it.

/// One `mallopt` parameter and the value deploywatch gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `M_ARENA_MAX`: arenas shared by every thread.
    ArenaMax(i32),
    /// `M_MMAP_THRESHOLD`: allocations at least this large are mapped on their own and returned
    /// to the system when freed; setting it also stops glibc from raising it.
    MmapThreshold(i32),
    /// `M_TRIM_THRESHOLD`: free space at the top of the heap beyond this is returned.
    TrimThreshold(i32),
}

/// The settings to apply, given the process environment. Pure.
pub fn settings(env: impl Fn(&str) -> Option<String>) -> Vec<Setting> {
    let tunables = env("GLIBC_TUNABLES").unwrap_or_default();
    let set_by_operator =
        |var: &str, tunable: &str| env(var).is_some() || tunables.contains(tunable);
    let mut out = Vec::new();
    if !set_by_operator("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") {
        out.push(Setting::ArenaMax(4));
    }
    if !set_by_operator("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") {
        out.push(Setting::MmapThreshold(64 << 10));
    }
    if !set_by_operator("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold") {
        out.push(Setting::TrimThreshold(128 << 10));
    }
    out
}

/// Applies [`settings`] for this process's environment. Call first thing in `main`, before any
/// thread starts. Returns the settings glibc accepted (none on other C libraries).
pub fn apply() -> Vec<Setting> {
    settings(|k| std::env::var(k).ok())
        .into_iter()
        .filter(|s| set(*s))
        .collect()
}

/// Returns the heap's free pages to the system, wherever they lie (not only at its top). For a
/// thread that has just freed a large working set; it walks the free lists under the arena lock,
/// so never on a request path.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes an integer, works under glibc's own arena locks and touches only
    // memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(s: Setting) -> bool {
    let (param, value) = match s {
        Setting::ArenaMax(v) => (libc::M_ARENA_MAX, v),
        Setting::MmapThreshold(v) => (libc::M_MMAP_THRESHOLD, v),
        Setting::TrimThreshold(v) => (libc::M_TRIM_THRESHOLD, v),
    };
    // SAFETY: mallopt takes two integers and changes allocator parameters under glibc's own lock;
    // it touches no memory of ours and is safe to call at any time from any thread.
    unsafe { libc::mallopt(param, value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_: Setting) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_own_settings_win() {
        let all = vec![
            Setting::ArenaMax(4),
            Setting::MmapThreshold(65536),
            Setting::TrimThreshold(131072),
        ];
        for (env, want) in [
            (vec![], all.clone()),
            (vec![("MALLOC_ARENA_MAX", "4")], all[1..].to_vec()),
            (
                vec![("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576")],
                vec![all[0], all[2]],
            ),
            (vec![("MALLOC_TRIM_THRESHOLD_", "0")], all[..2].to_vec()),
            (
                vec![
                    ("MALLOC_ARENA_MAX", "2"),
                    ("MALLOC_MMAP_THRESHOLD_", "1"),
                    ("MALLOC_TRIM_THRESHOLD_", "1"),
                ],
                vec![],
            ),
        ] {
            let got = settings(|k| {
                env.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            });
            assert_eq!(got, want, "{env:?}");
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_every_setting() {
        for s in settings(|_| None) {
            assert!(set(s), "glibc refused {s:?}");
        }
    }
}
