//! Leadership of the loops that must run once among replicas. A keeper per lease takes the lease
//! when it is free, renews it every third of its length, and hands it over at shutdown; the loop
//! it guards asks `generation()` before each round and uses the generation as its fencing token.
//!
//! Takeover bound: a crashed holder's lease runs out at most `ttl` after its last renewal, and a
//! waiting replica retries every `ttl / 4` (± 25% jitter), so the next holder starts within about
//! `1.3 × ttl` of the crash. With the default `ttl` of 3/4 of the poll interval, the next poll
//! comes within two poll intervals of the last one.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use crate::app::App;

/// The generation this replica holds the lease in, if it holds it now.
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<Option<i64>>,
}

impl Leadership {
    pub fn generation(&self) -> Option<i64> {
        *self.rx.borrow()
    }

    /// A leadership that is always held, for loops that need no lease (a single process on SQLite
    /// still takes leases; this is for tests of the loops themselves).
    pub fn always() -> Leadership {
        let (_tx, rx) = watch::channel(Some(0));
        Leadership { rx }
    }

    /// Resolves when leadership changes.
    pub async fn changed(&mut self) {
        let _ = self.rx.changed().await;
    }
}

/// How long to wait before the next attempt to take a lease someone else holds. Pure but for the
/// random draw passed in (`jitter` in [0, 1)).
pub fn retry_after(ttl: Duration, jitter: f64) -> Duration {
    (ttl / 4).mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Starts the keeper of lease `name` (also the `source` label of `deploywatch_leader`).
pub fn spawn(
    app: Arc<App>,
    name: &'static str,
    ttl: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Leadership {
    let (tx, rx) = watch::channel(None);
    let holder = app.instance_id.clone();
    tokio::spawn(async move {
        app.metrics.leader(name, false);
        loop {
            let held = *tx.borrow();
            let wait = match held {
                None => match app.store.acquire_lease(name, &holder, ttl).await {
                    Ok(Some(grant)) => {
                        if let Some(previous) = &grant.took_over_from {
                            app.metrics.lease_takeover(name);
                            tracing::info!(
                                lease = name,
                                previous_holder = previous.as_deref().unwrap_or("none"),
                                holder = %holder,
                                generation = grant.generation,
                                "took over the lease"
                            );
                        }
                        app.metrics.leader(name, true);
                        app.metrics.changed();
                        let _ = tx.send(Some(grant.generation));
                        ttl / 3
                    }
                    Ok(None) => retry_after(ttl, rand::rng().random::<f64>()),
                    Err(e) => {
                        tracing::debug!(lease = name, error = %e, "cannot reach the store for the lease");
                        retry_after(ttl, rand::rng().random::<f64>())
                    }
                },
                Some(generation) => {
                    match app.store.renew_lease(name, &holder, generation, ttl).await {
                        Ok(true) => ttl / 3,
                        Ok(false) | Err(_) => {
                            tracing::warn!(
                                lease = name,
                                generation,
                                "lost the lease; another replica holds it now"
                            );
                            app.metrics.leader(name, false);
                            app.metrics.changed();
                            let _ = tx.send(None);
                            retry_after(ttl, rand::rng().random::<f64>())
                        }
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {
                    if tx.borrow().is_some() {
                        let _ = app.store.expire_lease(name, &holder).await;
                    }
                    app.metrics.leader(name, false);
                    let _ = tx.send(None);
                    return;
                }
            }
        }
    });
    Leadership { rx }
}

/// Runs the loop `make` builds only while this replica holds lease `name`: started when the lease
/// is taken, told to stop (through the shutdown receiver it is given) when the lease is lost or
/// the process stops. The loop's own writes stay safe during a handover because each is
/// idempotent or claimed atomically (outbox rows by id, task leases by row, sweeps by condition).
pub fn run_as_leader<F, Fut>(
    app: Arc<App>,
    name: &'static str,
    ttl: Duration,
    mut shutdown: watch::Receiver<bool>,
    make: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut lead = spawn(app, name, ttl, shutdown.clone());
    tokio::spawn(async move {
        loop {
            while lead.generation().is_none() {
                tokio::select! {
                    _ = lead.changed() => {}
                    _ = shutdown.changed() => return,
                }
            }
            let (stop, stopped) = watch::channel(false);
            let running = tokio::spawn(make(stopped));
            while lead.generation().is_some() {
                tokio::select! {
                    _ = lead.changed() => {}
                    _ = shutdown.changed() => {
                        let _ = stop.send(true);
                        let _ = running.await;
                        return;
                    }
                }
            }
            let _ = stop.send(true);
            let _ = running.await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_replicas_retry_within_a_quarter_lease_give_or_take_a_quarter() {
        let ttl = Duration::from_secs(4);
        for (jitter, want_ms) in [
            (0.0, 750),
            (0.5, 1000),
            (0.999_999, 1250),
            (7.0, 1250),
            (-1.0, 750),
        ] {
            let got = retry_after(ttl, jitter).as_millis() as i64;
            assert!((got - want_ms).abs() <= 1, "jitter {jitter}: {got} ms");
        }
    }
}
