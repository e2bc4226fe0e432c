//! The git series: branch heads of the mirrored repositories and each app's drift.

use std::collections::HashSet;

use super::registry::Metrics;
use crate::domain::git::BranchView;

/// The label set of one `git_ref_info` series: repository, branch, commit.
pub type RefKey = (String, String, String);

impl Metrics {
    /// One branch of one repository; returns the `_info` label set it exported.
    pub fn git_branch(&self, repo: &str, b: &BranchView) -> RefKey {
        let labels = [repo, b.branch.as_str()];
        self.git_ref_commit_ts
            .set(&labels, b.commit_time.timestamp() as f64);
        if let (Some(a), Some(bh)) = (b.ahead, b.behind) {
            self.git_ref_ahead.set(&labels, a as i64 as f64);
            self.git_ref_behind.set(&labels, bh as i64 as f64);
        }
        let key = (repo.to_string(), b.branch.clone(), b.commit.clone());
        self.git_ref_info.set(&[&key.0, &key.1, &key.2], 1.0);
        self.changed();
        key
    }

    /// Drops the `_info` series of refs that moved or vanished since the last refresh, so a ref
    /// has one commit series, never a pile.
    pub fn git_refs_replaced(&self, exported: &mut HashSet<RefKey>, now: HashSet<RefKey>) {
        for old in exported.difference(&now) {
            let _ = self.git_ref_info.remove(&[&old.0, &old.1, &old.2]);
        }
        *exported = now;
        self.changed();
    }

    /// An app's drift from its branch: commits behind (absent when the deployed commit is not on
    /// the branch) and the age of the oldest commit not deployed.
    pub fn app_drift(&self, app: &str, behind: Option<usize>, undeployed_age_seconds: f64) {
        match behind {
            Some(n) => self.app_commits_behind.set(&[app], n as i64 as f64),
            None => {
                let _ = self.app_commits_behind.remove(&[app]);
            }
        }
        self.app_undeployed_age.set(&[app], undeployed_age_seconds);
        self.changed();
    }
}
