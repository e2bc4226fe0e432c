//! Leases: one replica at a time runs each loop that must run once (the DigitalOcean poller, the
//! outbox, the rollback worker, the task-lease sweeper). A lease has a holder, an expiry and a
//! generation that grows on every change of holder; the generation fences the holder's writes
//! (`put_snapshot`), so a holder that stalled past its lease cannot overwrite its successor's.

use std::time::Duration;

use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// A lease held: its fencing token, and who held it before when this was a takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub generation: i64,
    /// `Some` when the lease changed hands to us: the previous holder (`None` inside when the
    /// lease was never held).
    pub took_over_from: Option<Option<String>>,
}

impl Store {
    /// Takes or renews the lease `name` for `holder` when it is free, expired or already ours.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, StoreError> {
        let now = now_ms();
        let before = sqlx::query("SELECT holder, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        let previous: Option<(String, i64)> = match before {
            Some(r) => Some((r.try_get("holder")?, r.try_get("expires_at")?)),
            None => None,
        };
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at, generation) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
             generation = CASE WHEN leases.holder = excluded.holder AND leases.expires_at >= $4 \
                          THEN leases.generation ELSE leases.generation + 1 END \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4 \
             RETURNING generation",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let generation: i64 = row.try_get("generation")?;
        let took_over_from = match previous {
            Some((h, exp)) if h == holder && exp >= now => None,
            Some((h, _)) => Some(Some(h)),
            None => Some(None),
        };
        Ok(Some(Grant {
            generation,
            took_over_from,
        }))
    }

    /// Extends a lease we hold, only if it is still ours in the same generation.
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        generation: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3 AND generation = $4",
        )
        .bind(now_ms() + ttl.as_millis() as i64)
        .bind(name)
        .bind(holder)
        .bind(generation)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Hands the lease over at once (a graceful shutdown): expired in place, so the next holder's
    /// generation is still higher than ours.
    pub async fn expire_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores a snapshot for the other replicas, fenced: written only while `holder` still holds
    /// `lease` in `generation`. Returns false when fenced off.
    pub async fn put_snapshot(
        &self,
        snapshot: &str,
        body: &str,
        lease: &str,
        holder: &str,
        generation: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let res = sqlx::query(
            "INSERT INTO snapshots (name, version, body, updated_at) \
             SELECT $1, 1, $2, $3 WHERE EXISTS \
               (SELECT 1 FROM leases WHERE name = $4 AND holder = $5 AND generation = $6) \
             ON CONFLICT (name) DO UPDATE SET version = snapshots.version + 1, body = excluded.body, \
               updated_at = excluded.updated_at",
        )
        .bind(snapshot)
        .bind(body)
        .bind(now)
        .bind(lease)
        .bind(holder)
        .bind(generation)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The stored snapshot when its version is newer than `seen`.
    pub async fn snapshot_since(
        &self,
        snapshot: &str,
        seen: i64,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let row =
            sqlx::query("SELECT version, body FROM snapshots WHERE name = $1 AND version > $2")
                .bind(snapshot)
                .bind(seen)
                .fetch_optional(self.pool())
                .await?;
        match row {
            Some(r) => Ok(Some((r.try_get("version")?, r.try_get("body")?))),
            None => Ok(None),
        }
    }
}
