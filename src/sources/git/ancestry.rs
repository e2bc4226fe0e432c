//! Ancestry in the mirrors: does a deployed commit contain a merged one? The deploy loop asks so a
//! later push that carries a merged pull request counts as its deployment.

use super::{mirror_path, only_in, resolve_commit};
use crate::app::App;

/// Whether `ancestor` is reachable from `descendant` in the mirror configured for `app_name`.
/// `None` when there is no mirror for the app or either commit is not in it (not fetched yet).
pub async fn contains(app: &App, app_name: &str, descendant: &str, ancestor: &str) -> Option<bool> {
    let repo = app
        .config
        .git
        .repos
        .iter()
        .find(|r| r.app.as_ref().map(|a| a.as_str()) == Some(app_name))?;
    let mirror = mirror_path(&app.config.git.mirror_dir, repo);
    let (descendant, ancestor) = (descendant.to_string(), ancestor.to_string());
    tokio::task::spawn_blocking(move || {
        let repo = gix::open(&mirror).ok()?;
        let d = resolve_commit(&repo, &descendant)?;
        let a = resolve_commit(&repo, &ancestor)?;
        // Nothing of `ancestor`'s history is missing from `descendant`'s.
        only_in(&repo, a, d).ok().map(|missing| missing.is_empty())
    })
    .await
    .ok()
    .flatten()
}
