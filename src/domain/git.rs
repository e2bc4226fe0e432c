//! Git readings: branch heads of the mirrored repositories and each app's drift from its ACTIVE
//! commit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct GitSnapshot {
    pub repos: Vec<RepoView>,
    /// Per app name.
    pub drift: BTreeMap<String, Drift>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepoView {
    pub name: String,
    pub app: Option<String>,
    pub branches: Vec<BranchView>,
    pub fetched_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BranchView {
    pub branch: String,
    pub commit: String,
    pub commit_time: DateTime<Utc>,
    /// Against `refs/remotes/origin/<branch>`, when the mirror has it.
    pub ahead: Option<usize>,
    pub behind: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Drift {
    pub repo: String,
    pub branch: String,
    pub deployed_commit: String,
    pub head_commit: String,
    /// None when the deployed commit is not on the branch's history (or not in the mirror).
    pub commits_behind: Option<usize>,
    pub oldest_undeployed_commit_time: Option<DateTime<Utc>>,
}
