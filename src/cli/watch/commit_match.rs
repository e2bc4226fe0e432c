//! Pure decisions of `watch --commit`: whether a `--commit` value is usable, whether a
//! deployment's commit is the one asked for, which deployment to follow, and what the server says
//! about the post-deploy verdict. No I/O; the runner (`commit.rs`) feeds it what it observed.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::Phase;

/// Short SHAs shorter than git's own default abbreviation match too much to mean one commit.
pub const MIN_SHA_LEN: usize = 7;

/// The `--commit` value, lower-cased, or a sentence saying what to pass instead. Pure.
pub fn normalize_sha(raw: &str) -> Result<String, String> {
    let s = raw.trim().to_ascii_lowercase();
    if s.len() < MIN_SHA_LEN || s.len() > 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "--commit {:?} is not a commit SHA: give 7 to 40 hexadecimal digits, e.g. --commit \"$(git rev-parse HEAD)\"",
            crate::terminal::clean(raw)
        ));
    }
    Ok(s)
}

/// Whether `commit` (as a deployment reports it) names the same commit as `target`: one is a
/// prefix of the other and the shorter has at least [`MIN_SHA_LEN`] digits. Pure.
pub fn same_commit(target: &str, commit: &str) -> bool {
    let c = commit.trim().to_ascii_lowercase();
    let t = target.trim().to_ascii_lowercase();
    if c.len().min(t.len()) < MIN_SHA_LEN {
        return false;
    }
    c.starts_with(&t) || t.starts_with(&c)
}

/// One deployment as a poll saw it, from the API or a server's status document.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub app: String,
    pub app_id: String,
    pub id: String,
    pub phase: Phase,
    pub commit: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub steps: Vec<(String, String)>,
    /// Server only: the verdict shown for this deployment.
    pub verification: Verification,
}

/// How a followed deployment was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// It built the commit asked for.
    Exact,
    /// It built a later commit that contains the one asked for (`git merge-base --is-ancestor`).
    Contains,
}

impl Match {
    pub fn as_str(self) -> &'static str {
        match self {
            Match::Exact => "exact",
            Match::Contains => "contains",
        }
    }
}

/// Which deployment carries `target`, as an index into `seen`. Pure.
///
/// The newest deployment of the exact commit wins, unless it was canceled and a newer deployment
/// contains the commit: App Platform cancels a queued deployment when a later push supersedes it,
/// and that later deployment is then the one that ships the commit. `contains(commit)` answers
/// whether a deployed commit contains `target` (`None`: unknown, e.g. no git repository).
pub fn pick(
    target: &str,
    seen: &[Seen],
    contains: &dyn Fn(&str) -> Option<bool>,
) -> Option<(usize, Match)> {
    let newest = |it: &mut dyn Iterator<Item = usize>| -> Option<usize> {
        it.max_by_key(|&i| (seen[i].created_at, std::cmp::Reverse(i)))
    };
    let exact = newest(&mut (0..seen.len()).filter(|&i| {
        seen[i]
            .commit
            .as_deref()
            .is_some_and(|c| same_commit(target, c))
    }));
    if let Some(i) = exact
        && seen[i].phase != Phase::Canceled
    {
        return Some((i, Match::Exact));
    }
    let not_before = exact.and_then(|i| seen[i].created_at);
    let containing = newest(&mut (0..seen.len()).filter(|&i| {
        let s = &seen[i];
        let later = match (not_before, s.created_at) {
            (Some(b), Some(c)) => c > b,
            (Some(_), None) => false,
            (None, _) => true,
        };
        later
            && s.phase != Phase::Canceled
            && s.commit
                .as_deref()
                .is_some_and(|c| !same_commit(target, c) && contains(c) == Some(true))
    }));
    match (containing, exact) {
        (Some(i), _) => Some((i, Match::Contains)),
        (None, Some(i)) => Some((i, Match::Exact)),
        (None, None) => None,
    }
}

/// The post-deploy verdict as a status document shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The source shows no verdict at all (the API directly, or a server without verification).
    NotReported,
    Pending,
    Passed,
    Failed,
    Inconclusive,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::NotReported => "not_reported",
            Verification::Pending => "pending",
            Verification::Passed => "passed",
            Verification::Failed => "failed",
            Verification::Inconclusive => "inconclusive",
        }
    }

    fn parse(v: &Value) -> Option<Verification> {
        let result = v.get("result").or(Some(v))?.as_str()?;
        Some(match result.to_ascii_lowercase().as_str() {
            "pending" => Verification::Pending,
            "passed" => Verification::Passed,
            "failed" => Verification::Failed,
            // A verdict this build does not know is not a pass.
            _ => Verification::Inconclusive,
        })
    }
}

/// The verdict for deployment `id` from a status document's app object and that deployment's
/// object: the deployment's own `verification` first, else the app's when it names no other
/// deployment. Pure; anything unreadable is `NotReported`.
pub fn verification_of(app: &Value, deployment: &Value, id: &str) -> Verification {
    if let Some(v) = deployment
        .get("verification")
        .filter(|v| !v.is_null())
        .and_then(Verification::parse)
    {
        return v;
    }
    let Some(v) = app.get("verification").filter(|v| !v.is_null()) else {
        return Verification::NotReported;
    };
    match v.get("deployment_id").and_then(Value::as_str) {
        Some(other) if other != id => Verification::NotReported,
        _ => Verification::parse(v).unwrap_or(Verification::NotReported),
    }
}

/// How a watch ends once its deployment is ACTIVE, given the verdict (with `--verify`). Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterActive {
    Succeeded,
    /// ACTIVE is the end: the source reports no verdict.
    SucceededUnverified,
    WaitForVerdict,
    VerificationFailed,
}

pub fn after_active(verify: bool, v: Verification) -> AfterActive {
    match (verify, v) {
        (false, _) | (true, Verification::Passed | Verification::Inconclusive) => {
            AfterActive::Succeeded
        }
        (true, Verification::NotReported) => AfterActive::SucceededUnverified,
        (true, Verification::Pending) => AfterActive::WaitForVerdict,
        (true, Verification::Failed) => AfterActive::VerificationFailed,
    }
}

/// Deployments in a server's status document (`/api/v1/status`): each app's in-progress,
/// latest and active deployment, and its last failure, deduplicated by id. Pure and tolerant:
/// entries without an id are skipped.
pub fn seen_in_status(doc: &Value, only_app: Option<&str>) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::new();
    let apps = doc.get("apps").and_then(Value::as_array);
    for a in apps.into_iter().flatten() {
        let name = a.get("name").and_then(Value::as_str).unwrap_or_default();
        let app_id = a.get("id").and_then(Value::as_str).unwrap_or_default();
        if only_app.is_some_and(|o| o != name && o != app_id) {
            continue;
        }
        for key in ["latest", "in_progress", "active"] {
            let d = &a[key];
            let Some(id) = d.get("id").and_then(Value::as_str) else {
                continue;
            };
            if out.iter().any(|s| s.id == id) {
                continue;
            }
            out.push(Seen {
                app: name.to_string(),
                app_id: app_id.to_string(),
                id: id.to_string(),
                phase: Phase::parse(d.get("phase").and_then(Value::as_str).unwrap_or("")),
                commit: d.get("commit").and_then(Value::as_str).map(str::to_string),
                created_at: time(&d["created_at"]),
                steps: steps(&d["steps"]),
                verification: verification_of(a, d, id),
            });
        }
        let f = &a["last_failure"];
        if let Some(id) = f.get("deployment_id").and_then(Value::as_str)
            && !out.iter().any(|s| s.id == id)
        {
            out.push(Seen {
                app: name.to_string(),
                app_id: app_id.to_string(),
                id: id.to_string(),
                phase: Phase::Error,
                commit: f.get("commit").and_then(Value::as_str).map(str::to_string),
                created_at: time(&f["created_at"]).or_else(|| time(&f["ended_at"])),
                steps: Vec::new(),
                verification: Verification::NotReported,
            });
        }
    }
    out
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn steps(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s.get("name")?.as_str()?.to_string(),
                s.get("status")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commit_values() {
        let table = [
            ("abc1234", Ok("abc1234")),
            ("  ABC1234DEF ", Ok("abc1234def")),
            ("abc123", Err(())),
            ("main", Err(())),
            ("abc123z", Err(())),
            ("", Err(())),
            ("\u{1b}[2Jabcdef0", Err(())),
        ];
        for (raw, want) in table {
            let got = normalize_sha(raw);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(w), "{raw:?}"),
                Err(()) => {
                    let e = got.expect_err(raw);
                    assert!(e.contains("git rev-parse HEAD"), "{e}");
                    assert!(!e.contains('\u{1b}'), "escaped: {e}");
                }
            }
        }
    }

    #[test]
    fn commits_match_by_prefix_either_way() {
        let full = "0123456789abcdef0123456789abcdef01234567";
        let table = [
            ("0123456", full, true),
            (full, "0123456", true),
            (full, full, true),
            ("0123456789ABCDEF", full, true),
            ("012345", full, false),
            (full, "012345", false),
            ("0123457", full, false),
            ("0123456", "", false),
        ];
        for (t, c, want) in table {
            assert_eq!(same_commit(t, c), want, "{t} vs {c}");
        }
    }

    fn seen(id: &str, commit: &str, phase: Phase, minute: i64) -> Seen {
        Seen {
            app: "api".into(),
            app_id: "a1".into(),
            id: id.into(),
            phase,
            commit: (!commit.is_empty()).then(|| commit.to_string()),
            created_at: Some(DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minute)),
            steps: vec![],
            verification: Verification::NotReported,
        }
    }

    #[test]
    fn which_deployment_carries_the_commit() {
        let t = "aaaaaaa";
        // Commits the git repository knows to contain `t`.
        let descendants = ["ccccccc1"];
        let git = |c: &str| Some(descendants.contains(&c));
        let no_git = |_: &str| None;
        let table: Vec<(&str, Vec<Seen>, bool, Option<(&str, Match)>)> = vec![
            ("nothing yet", vec![], true, None),
            (
                "only other commits",
                vec![seen("d0", "bbbbbbb", Phase::Active, 0)],
                true,
                None,
            ),
            (
                "the exact commit",
                vec![
                    seen("d0", "bbbbbbb", Phase::Active, 0),
                    seen("d1", "aaaaaaa0000", Phase::Building, 1),
                ],
                true,
                Some(("d1", Match::Exact)),
            ),
            (
                "the newest of two deployments of the commit",
                vec![
                    seen("d1", "aaaaaaa", Phase::Error, 1),
                    seen("d2", "aaaaaaa", Phase::Building, 2),
                ],
                true,
                Some(("d2", Match::Exact)),
            ),
            (
                "exact beats a containing one",
                vec![
                    seen("d1", "aaaaaaa", Phase::Building, 1),
                    seen("d2", "ccccccc1", Phase::Building, 2),
                ],
                true,
                Some(("d1", Match::Exact)),
            ),
            (
                "a later deployment that contains it, when the commit never shows up",
                vec![
                    seen("d0", "bbbbbbb", Phase::Superseded, 0),
                    seen("d2", "ccccccc1", Phase::Deploying, 2),
                ],
                true,
                Some(("d2", Match::Contains)),
            ),
            (
                "without git nothing contains it",
                vec![seen("d2", "ccccccc1", Phase::Deploying, 2)],
                false,
                None,
            ),
            (
                "canceled, superseded by one that contains it",
                vec![
                    seen("d1", "aaaaaaa", Phase::Canceled, 1),
                    seen("d2", "ccccccc1", Phase::Building, 2),
                ],
                true,
                Some(("d2", Match::Contains)),
            ),
            (
                "canceled, and the containing one is older: the cancel stands",
                vec![
                    seen("d0", "ccccccc1", Phase::Active, 0),
                    seen("d1", "aaaaaaa", Phase::Canceled, 1),
                ],
                true,
                Some(("d1", Match::Exact)),
            ),
            (
                "a deployment without a commit is never it",
                vec![seen("d1", "", Phase::Building, 1)],
                true,
                None,
            ),
        ];
        for (name, rows, with_git, want) in table {
            let got = if with_git {
                pick(t, &rows, &git)
            } else {
                pick(t, &rows, &no_git)
            };
            let got = got.map(|(i, m)| (rows[i].id.as_str(), m));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn verdicts_from_the_status_document() {
        let table = [
            (json!({}), json!({}), Verification::NotReported),
            (
                json!({}),
                json!({"verification": {"result": "passed"}}),
                Verification::Passed,
            ),
            (
                json!({"verification": {"result": "failed"}}),
                json!({}),
                Verification::Failed,
            ),
            (
                json!({"verification": {"deployment_id": "d1", "result": "pending"}}),
                json!({}),
                Verification::Pending,
            ),
            (
                json!({"verification": {"deployment_id": "other", "result": "failed"}}),
                json!({}),
                Verification::NotReported,
            ),
            (
                json!({"verification": "passed"}),
                json!({}),
                Verification::Passed,
            ),
            (
                json!({"verification": {"result": "weird"}}),
                json!({}),
                Verification::Inconclusive,
            ),
            (
                json!({"verification": {"result": 7}}),
                json!({"verification": null}),
                Verification::NotReported,
            ),
        ];
        for (app, dep, want) in table {
            assert_eq!(verification_of(&app, &dep, "d1"), want, "{app} {dep}");
        }
    }

    #[test]
    fn when_an_active_deployment_is_the_end() {
        use AfterActive::*;
        use Verification::*;
        let table = [
            (false, NotReported, Succeeded),
            (false, Failed, Succeeded),
            (true, NotReported, SucceededUnverified),
            (true, Pending, WaitForVerdict),
            (true, Passed, Succeeded),
            (true, Inconclusive, Succeeded),
            (true, Failed, VerificationFailed),
        ];
        for (verify, v, want) in table {
            assert_eq!(after_active(verify, v), want, "{verify} {v:?}");
        }
    }

    #[test]
    fn deployments_in_a_status_document() {
        let doc = json!({"apps": [
            {"name": "api", "id": "a1",
             "latest": {"id": "d2", "phase": "BUILDING", "commit": "bbbbbbb", "steps": [{"name": "build", "status": "RUNNING"}]},
             "in_progress": {"id": "d2", "phase": "BUILDING", "commit": "bbbbbbb"},
             "active": {"id": "d1", "phase": "ACTIVE", "commit": "aaaaaaa", "verification": {"result": "passed"}},
             "last_failure": {"deployment_id": "d0", "commit": "0000000"}},
            {"name": "web", "latest": {"phase": "ACTIVE"}},
            "not an object",
        ]});
        let all = seen_in_status(&doc, None);
        let ids: Vec<_> = all.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["d2", "d1", "d0"]);
        assert_eq!(all[0].steps, [("build".to_string(), "RUNNING".to_string())]);
        assert_eq!(all[1].verification, Verification::Passed);
        assert_eq!(all[2].phase, Phase::Error);
        assert!(seen_in_status(&doc, Some("web")).is_empty());
        assert!(seen_in_status(&json!("garbage"), None).is_empty());
    }
}
