//! The environment as the loader sees it; tests pass a map instead of mutating the process env.

use std::collections::BTreeMap;

/// The environment as the loader sees it; tests pass a map instead of mutating the process env.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;

    /// For a secret: why `KEY` (or `KEY_FILE`) is set but unusable (blank, or an unreadable
    /// file), so the loader refuses instead of silently treating it as unset.
    fn blank_secret(&self, key: &str) -> Option<String>;
}

/// Pure: the reason a raw secret value is unusable.
fn blank_reason(name: &str, value: &str) -> Option<String> {
    value.trim().is_empty().then(|| {
        format!("{name} is set but empty or whitespace-only; set a real token or unset {name}")
    })
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    /// `KEY`, or the contents of the file named by `KEY_FILE` (Docker and Kubernetes secrets).
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| {
                let path = std::env::var(format!("{key}_FILE"))
                    .ok()
                    .filter(|v| !v.is_empty())?;
                std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|v| !v.is_empty())
            })
    }

    fn blank_secret(&self, key: &str) -> Option<String> {
        if let Some(v) = std::env::var_os(key) {
            return blank_reason(key, &v.to_string_lossy());
        }
        let file_key = format!("{key}_FILE");
        let path = std::env::var_os(&file_key)?;
        if let Some(r) = blank_reason(&file_key, &path.to_string_lossy()) {
            return Some(r);
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => blank_reason(&format!("{file_key} ({})", path.to_string_lossy()), &text),
            Err(e) => Some(format!(
                "{file_key}: cannot read {}: {e}; fix the path or unset {file_key}",
                path.to_string_lossy()
            )),
        }
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned().filter(|v| !v.is_empty())
    }

    fn blank_secret(&self, key: &str) -> Option<String> {
        if let Some(v) = self.get(key) {
            return blank_reason(key, v);
        }
        let file_key = format!("{key}_FILE");
        blank_reason(&file_key, self.get(&file_key)?)
    }
}
