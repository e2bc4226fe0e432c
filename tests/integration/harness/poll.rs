//! `until`: poll a condition with a deadline, and on timeout say what was awaited and what was
//! last seen, so a red test tells why without a rerun.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// What one poll observed: done with a value, or not yet, with a description of what was seen.
pub trait Observation {
    type Done;
    fn observe(self) -> Result<Self::Done, String>;
}

impl Observation for bool {
    type Done = ();
    fn observe(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Observation for Option<T> {
    type Done = T;
    fn observe(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

/// `Err(seen)` is "not yet", and `seen` is reported if the deadline passes.
impl<T, E: Debug> Observation for Result<T, E> {
    type Done = T;
    fn observe(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// `Ok(value)` when `done`, else `Err(value)`: the value is what `until` reports on timeout.
pub fn seen<T>(done: bool, value: T) -> Result<T, T> {
    if done { Ok(value) } else { Err(value) }
}

/// Polls `f` every 50 ms until it observes done, and returns the value; after `limit`, panics
/// naming `what` and the last observation.
pub async fn until<F, Fut, O>(what: &str, limit: Duration, mut f: F) -> O::Done
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Observation,
{
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        polls += 1;
        let last = match f().await.observe() {
            Ok(v) => return v,
            Err(last) => last,
        };
        if start.elapsed() >= limit {
            panic!(
                "timed out after {limit:?} ({polls} polls) waiting for {what}; last seen: {last}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
