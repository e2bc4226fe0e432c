//! Ancestry in the mirrors: does a deployed commit contain a merged one? The deploy loop asks so a
//! later push that carries a merged pull request counts as its deployment.

use super::command::Mirror;
use super::mirror_path;
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
        let m = Mirror::new(&mirror);
        let d = m.resolve_commit(&descendant).ok()??;
        let a = m.resolve_commit(&ancestor).ok()??;
        m.is_ancestor(&a, &d).ok()
    })
    .await
    .ok()
    .flatten()
}
