//! Post-deploy verdicts: one row per verified deployment, final once.

use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// A deployment's verification as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationRow {
    pub deployment_id: String,
    pub app: String,
    /// `pending`, `passed`, `failed` or `inconclusive`.
    pub result: String,
    /// The verdict's reasons and evidence.
    pub detail: serde_json::Value,
    pub started_at_ms: i64,
    /// Set when the verdict is final.
    pub ended_at_ms: Option<i64>,
}

impl Store {
    /// Saves the latest verdict of a deployment's window. A final verdict is written once: a later
    /// write for the same deployment changes nothing (a stalled replica cannot overturn it).
    /// Returns true when this call made the verdict final.
    pub async fn save_verification(&self, v: &VerificationRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO deployment_verifications (deployment_id, app, result, detail, started_at, updated_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (deployment_id) DO UPDATE SET result = excluded.result, detail = excluded.detail, \
             updated_at = excluded.updated_at, ended_at = excluded.ended_at \
             WHERE deployment_verifications.ended_at IS NULL",
        )
        .bind(&v.deployment_id)
        .bind(&v.app)
        .bind(&v.result)
        .bind(v.detail.to_string())
        .bind(v.started_at_ms)
        .bind(now_ms())
        .bind(v.ended_at_ms)
        .execute(&self.pool)
        .await;
        let r = self.note_write(r.map_err(StoreError::from))?;
        Ok(v.ended_at_ms.is_some() && r.rows_affected() == 1)
    }

    /// The latest verification of each app (the one the status document and the gauge show).
    pub async fn latest_verifications(&self) -> Result<Vec<VerificationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT deployment_id, app, result, detail, started_at, ended_at FROM deployment_verifications v \
             WHERE started_at = (SELECT MAX(started_at) FROM deployment_verifications w WHERE w.app = v.app) \
             ORDER BY app",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read).collect()
    }

    /// Verifications, oldest first; `final_only` for the ended ones (folded into the counters).
    pub async fn verifications(
        &self,
        final_only: bool,
    ) -> Result<Vec<VerificationRow>, StoreError> {
        let sql = if final_only {
            "SELECT deployment_id, app, result, detail, started_at, ended_at FROM deployment_verifications \
             WHERE ended_at IS NOT NULL ORDER BY started_at"
        } else {
            "SELECT deployment_id, app, result, detail, started_at, ended_at FROM deployment_verifications \
             ORDER BY started_at"
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(read).collect()
    }
}

fn read(r: &sqlx::any::AnyRow) -> Result<VerificationRow, StoreError> {
    let detail: String = r.try_get("detail")?;
    Ok(VerificationRow {
        deployment_id: r.try_get("deployment_id")?,
        app: r.try_get("app")?,
        result: r.try_get("result")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        started_at_ms: r.try_get("started_at")?,
        ended_at_ms: r.try_get("ended_at")?,
    })
}

impl VerificationRow {
    /// The verdict as the status document and task context show it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "deployment_id": self.deployment_id,
            "result": self.result,
            "started_at": chrono::DateTime::from_timestamp_millis(self.started_at_ms),
            "ended_at": self.ended_at_ms.and_then(chrono::DateTime::from_timestamp_millis),
        });
        if let (Some(m), serde_json::Value::Object(d)) = (v.as_object_mut(), &self.detail) {
            for k in [
                "window",
                "reasons",
                "components",
                "suspect_commits",
                "log_tail",
                "commit",
            ] {
                if let Some(x) = d.get(k) {
                    m.insert(k.to_string(), x.clone());
                }
            }
        }
        v
    }
}
