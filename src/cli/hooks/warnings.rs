//! Pure: what the pre-push hook warns about (a branch behind its remote-tracking ref, a failed
//! latest deployment). Outside strings are escaped for the terminal.

use serde_json::Value;

/// The pre-push warning when `branch` is `behind` commits behind its remote-tracking ref. Pure.
pub fn behind_warning(remote: &str, branch: &str, behind: u64) -> Option<String> {
    (behind > 0).then(|| {
        format!(
            "local {branch} is {behind} commit{} behind {remote}/{branch} (as of your last fetch); \
             `git pull --rebase {remote} {branch}` brings it up to date",
            if behind == 1 { "" } else { "s" }
        )
    })
}

/// The pre-push warnings from a status document: each app (or only `app`) whose latest
/// deployment failed. Pure; names and commits are escaped for the terminal.
pub fn deploy_warnings(doc: &Value, app: Option<&str>) -> Vec<String> {
    use crate::terminal::clean;
    let mut out = Vec::new();
    for a in doc["apps"].as_array().into_iter().flatten() {
        let name = a["name"].as_str().unwrap_or_default();
        if app.is_some_and(|x| x != name) {
            continue;
        }
        let latest = &a["latest"];
        let phase = latest["phase"].as_str().unwrap_or_default();
        if phase != "ERROR" {
            continue;
        }
        let commit = latest["commit"]
            .as_str()
            .map(|c| format!(" of commit {}", clean(c.get(..12).unwrap_or(c))))
            .unwrap_or_default();
        out.push(format!(
            "the latest deployment of {}{commit} failed; this push may not deploy until it is fixed \
             (`deploywatch status --app {}`)",
            clean(name),
            clean(name)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_push_warnings() {
        assert_eq!(behind_warning("origin", "main", 0), None);
        let w = behind_warning("origin", "main", 1).unwrap();
        assert!(w.contains("1 commit behind origin/main"), "{w}");
        assert!(
            behind_warning("origin", "main", 3)
                .unwrap()
                .contains("3 commits")
        );
        let doc = serde_json::json!({"apps": [
            {"name": "api", "latest": {"phase": "ERROR", "commit": "abcdef0123456789"}},
            {"name": "web", "latest": {"phase": "ACTIVE"}},
            {"name": "x\u{1b}[2J", "latest": {"phase": "ERROR"}},
            {"latest": null},
        ]});
        let all = deploy_warnings(&doc, None);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(
            all[0].contains("api of commit abcdef012345 failed"),
            "{all:?}"
        );
        assert!(!all[1].contains('\u{1b}'), "{all:?}");
        assert_eq!(deploy_warnings(&doc, Some("web")), Vec::<String>::new());
        assert!(deploy_warnings(&serde_json::json!(null), None).is_empty());
    }
}
