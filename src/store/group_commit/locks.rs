//! PostgreSQL's advisory locks for a group-commit batch: which keys a batch writes under, and
//! taking them in one global order (see `group_commit.rs`, "lock order").

use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};

use crate::store::StoreError;
use crate::store::ingest::{AlertRecord, NotificationRecord};

/// The advisory-lock key of a receipt (body hash) or an episode (fingerprint): stable across
/// versions and replicas (SHA-256, not a std hasher). Pure.
pub(super) fn lock_key(s: &str) -> i64 {
    let h = Sha256::new()
        .chain_update(b"deploywatch-ingest\0")
        .chain_update(s.as_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_be_bytes(b)
}

/// Every key a batch writes under, sorted and without repeats: its receipts and its episodes.
/// Pure.
pub(super) fn batch_keys<'a>(
    jobs: impl Iterator<Item = (&'a NotificationRecord, &'a [AlertRecord])>,
) -> Vec<i64> {
    let mut keys: Vec<i64> = jobs
        .flat_map(|(n, alerts)| {
            std::iter::once(n.body_sha256.as_str())
                .chain(alerts.iter().map(|a| a.fingerprint.as_str()))
        })
        .map(lock_key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// PostgreSQL: takes the batch's advisory locks (held until COMMIT or ROLLBACK) in key order, in
/// one statement, before any row is touched. Every row a notification writes hangs off a receipt or
/// an episode (task keys carry the episode's fingerprint), so two batches that share one wait at
/// this statement for each other, in one global order, and cannot deadlock on the rows.
pub(super) async fn lock_keys(
    tx: &mut Transaction<'_, Any>,
    keys: &[i64],
) -> Result<(), StoreError> {
    // In the same round trip: only nested-loop joins for the rest of this transaction. Every
    // ingest statement joins a small JSON set to a table by a key, one index probe per element;
    // but the planner guesses 100 rows for the set and, on a young table autovacuum has not
    // analyzed yet, half the table per key, so it hashed or merged whole tables (measured: 22,000
    // tasks read per batch, 13 ms, where the probes take 0.1 ms). Turning off only sequential
    // scans was worse: it merge-joined over whole indexes.
    // Each list under one TLS record (`ingest_batch::PG_CHUNK`), in key order: the locks are still
    // taken in one global order.
    for list in key_lists(keys) {
        sqlx::query(
            "SELECT set_config('enable_hashjoin', 'off', true) AS h, set_config('enable_mergejoin', 'off', true) AS m, \
             COUNT(pg_advisory_xact_lock(k)) AS n FROM \
             (SELECT CAST(t AS BIGINT) AS k FROM unnest(string_to_array($1, ',')) AS t ORDER BY k OFFSET 0) AS s",
        )
        .bind(list)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Sorted keys as comma-separated lists of at most `ingest_batch::PG_CHUNK` bytes, in order. Pure.
pub(super) fn key_lists(keys: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for k in keys {
        let k = k.to_string();
        if !cur.is_empty() && cur.len() + k.len() + 1 > crate::store::ingest_batch::PG_CHUNK {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&k);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
