//! What a migration check expects and finds: the migrations directory's versions, the app's
//! recorded history, and the pure comparison of the two (pending, failed, unknown).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

/// What a check found, as its result's details and the fix task's context.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Findings {
    pub missing_tables: Vec<String>,
    pub missing_columns: Vec<String>,
    pub tracking_style: Option<String>,
    pub pending: Vec<String>,
    pub failed: Vec<String>,
    pub unknown: Vec<String>,
    pub failed_sql_checks: Vec<String>,
}

impl Findings {
    pub fn ok(&self) -> bool {
        self.missing_tables.is_empty()
            && self.missing_columns.is_empty()
            && self.pending.is_empty()
            && self.failed.is_empty()
            && self.failed_sql_checks.is_empty()
    }

    /// One sentence naming every problem.
    pub fn reason(&self) -> String {
        let mut parts = Vec::new();
        let list = |v: &[String]| v.join(", ");
        if !self.missing_tables.is_empty() {
            parts.push(format!("missing tables: {}", list(&self.missing_tables)));
        }
        if !self.missing_columns.is_empty() {
            parts.push(format!("missing columns: {}", list(&self.missing_columns)));
        }
        if !self.pending.is_empty() {
            parts.push(format!("pending migrations: {}", list(&self.pending)));
        }
        if !self.failed.is_empty() {
            parts.push(format!("failed migrations: {}", list(&self.failed)));
        }
        if !self.failed_sql_checks.is_empty() {
            parts.push(format!(
                "failed SQL checks: {}",
                list(&self.failed_sql_checks)
            ));
        }
        parts.join("; ")
    }
}

/// What the migrations directory says should be applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// Numeric versions (sqlx, golang-migrate, Rails, numbered files).
    pub versions: BTreeSet<i64>,
    /// File stems, for tables that record names.
    pub names: BTreeSet<String>,
    /// drizzle's journal `when` values, if there is a journal.
    pub drizzle_when: BTreeSet<i64>,
}

/// Reads numbered `.sql` files (`0001_init.sql`, `20240101_x.up.sql`); `.down.sql` files are undo
/// scripts, not migrations.
pub fn expected_from_dir(dir: &Path) -> std::io::Result<Expected> {
    let mut e = Expected::default();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") || name.ends_with(".down.sql") {
            continue;
        }
        let stem = name
            .trim_end_matches(".sql")
            .trim_end_matches(".up")
            .to_string();
        let digits: String = stem.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(v) = digits.parse::<i64>() {
            e.versions.insert(v);
        }
        e.names.insert(stem);
    }
    let journal = dir.join("meta").join("_journal.json");
    if let Ok(text) = std::fs::read_to_string(journal)
        && let Ok(j) = serde_json::from_str::<serde_json::Value>(&text)
    {
        for entry in j["entries"].as_array().into_iter().flatten() {
            if let Some(w) = entry["when"].as_i64() {
                e.drizzle_when.insert(w);
            }
        }
    }
    Ok(e)
}

/// The app's migration history as recorded by its tool.
#[derive(Debug, Default, PartialEq)]
pub struct History {
    pub applied_versions: BTreeSet<i64>,
    pub applied_names: BTreeSet<String>,
    pub failed: BTreeSet<String>,
    /// golang-migrate keeps only the current version and a dirty flag.
    pub current_version: Option<i64>,
    pub drizzle_when: BTreeSet<i64>,
}

/// Pending, failed and unknown migrations. Pure.
pub fn compare(
    f: &mut Findings,
    h: &History,
    expected: Option<&Expected>,
    expected_version: Option<i64>,
) {
    f.failed = h.failed.iter().cloned().collect();
    if let Some(e) = expected {
        if !e.drizzle_when.is_empty() || !h.drizzle_when.is_empty() {
            f.pending = e
                .drizzle_when
                .difference(&h.drizzle_when)
                .map(|v| v.to_string())
                .collect();
            f.unknown = h
                .drizzle_when
                .difference(&e.drizzle_when)
                .map(|v| v.to_string())
                .collect();
            if e.drizzle_when.is_empty() {
                // No journal: compare counts of files and rows.
                let missing = e.names.len().saturating_sub(h.drizzle_when.len());
                f.pending = e.names.iter().rev().take(missing).rev().cloned().collect();
                f.unknown.clear();
            }
        } else if let Some(cur) = h.current_version {
            f.pending = e
                .versions
                .iter()
                .filter(|v| **v > cur)
                .map(|v| v.to_string())
                .collect();
            if !e.versions.contains(&cur) && cur != 0 {
                f.unknown.push(cur.to_string());
            }
        } else if !h.applied_versions.is_empty() || h.applied_names.is_empty() {
            let failed: BTreeSet<i64> = h.failed.iter().filter_map(|v| v.parse().ok()).collect();
            f.pending = e
                .versions
                .iter()
                .filter(|v| !h.applied_versions.contains(v) && !failed.contains(v))
                .map(|v| v.to_string())
                .collect();
            f.unknown = h
                .applied_versions
                .difference(&e.versions)
                .map(|v| v.to_string())
                .collect();
        } else {
            f.pending = e.names.difference(&h.applied_names).cloned().collect();
            f.unknown = h.applied_names.difference(&e.names).cloned().collect();
        }
    }
    if let Some(want) = expected_version {
        let have = h
            .current_version
            .or_else(|| h.applied_versions.iter().max().copied())
            .unwrap_or(0);
        if have < want && f.pending.is_empty() {
            f.pending.push(format!("{} to {want}", have + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for (s, ok) in [
            ("client_needs", true),
            ("_t1", true),
            ("1abc", false),
            ("a;drop", false),
            ("", false),
            ("a b", false),
        ] {
            assert_eq!(crate::domain::validate_identifier(s).is_ok(), ok, "{s}");
        }
    }

    fn exp(v: &[i64]) -> Expected {
        Expected {
            versions: v.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn comparison_table() {
        // (history, expected, expected_version) -> (pending, failed, unknown)
        let sqlx_like = History {
            applied_versions: [1, 2].into(),
            failed: ["3".to_string()].into(),
            ..Default::default()
        };
        let golang_dirty = History {
            current_version: Some(2),
            failed: ["2".to_string()].into(),
            ..Default::default()
        };
        let unknown = History {
            applied_versions: [1, 2, 9].into(),
            ..Default::default()
        };
        let cases: Vec<(
            &str,
            History,
            Option<Expected>,
            Option<i64>,
            Vec<&str>,
            Vec<&str>,
            Vec<&str>,
        )> = vec![
            (
                "all applied",
                History {
                    applied_versions: [1, 2, 3].into(),
                    ..Default::default()
                },
                Some(exp(&[1, 2, 3])),
                None,
                vec![],
                vec![],
                vec![],
            ),
            (
                "pending",
                History {
                    applied_versions: [1].into(),
                    ..Default::default()
                },
                Some(exp(&[1, 2, 3])),
                None,
                vec!["2", "3"],
                vec![],
                vec![],
            ),
            (
                "failed is not pending",
                sqlx_like,
                Some(exp(&[1, 2, 3])),
                None,
                vec![],
                vec!["3"],
                vec![],
            ),
            (
                "golang-migrate dirty",
                golang_dirty,
                Some(exp(&[1, 2, 3])),
                None,
                vec!["3"],
                vec!["2"],
                vec![],
            ),
            (
                "unknown applied",
                unknown,
                Some(exp(&[1, 2])),
                None,
                vec![],
                vec![],
                vec!["9"],
            ),
            (
                "expected version only",
                History {
                    applied_versions: [1, 2].into(),
                    ..Default::default()
                },
                None,
                Some(4),
                vec!["3 to 4"],
                vec![],
                vec![],
            ),
        ];
        for (name, h, e, ev, pending, failed, unknown) in cases {
            let mut f = Findings::default();
            compare(&mut f, &h, e.as_ref(), ev);
            assert_eq!(f.pending, pending, "{name}: pending");
            assert_eq!(f.failed, failed, "{name}: failed");
            assert_eq!(f.unknown, unknown, "{name}: unknown");
        }
    }

    #[test]
    fn reads_numbered_files() {
        let d = tempfile::tempdir().expect("tempdir");
        for f in [
            "0001_init.sql",
            "0002_more.up.sql",
            "0002_more.down.sql",
            "README.md",
        ] {
            std::fs::write(d.path().join(f), "--").expect("write");
        }
        let e = expected_from_dir(d.path()).expect("read");
        assert_eq!(e.versions, [1, 2].into());
        assert_eq!(
            e.names,
            ["0001_init".to_string(), "0002_more".to_string()].into()
        );
    }

    #[test]
    fn scrubs_credentials() {
        assert_eq!(
            crate::store::redact("mysql://app:s3cret@db/app failed"),
            "mysql://app:***@db/app failed"
        );
    }
}
