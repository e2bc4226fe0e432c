//! Tolerant reading of listings: a malformed field drops the field, a malformed object drops the
//! object, never the page. Pure.

use serde::Deserialize;

use super::app::App;
use super::deployment::{Deployment, Links};

/// Parses each value as `T`, keeping the ones that parse and counting the others.
fn lenient<T: serde::de::DeserializeOwned>(values: Vec<serde_json::Value>) -> (Vec<T>, usize) {
    let total = values.len();
    let ok: Vec<T> = values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let skipped = total - ok.len();
    (ok, skipped)
}

/// Pure: the JSON pointer of the smallest part of `v` whose removal makes `parses` true, given
/// that removing the node at `ptr` does. Descends while one child alone is to blame.
fn culprit(
    v: &serde_json::Value,
    ptr: &str,
    parses: &dyn Fn(&serde_json::Value) -> bool,
) -> String {
    let children: Vec<String> = match v.pointer(ptr) {
        Some(serde_json::Value::Object(m)) => m
            .keys()
            .map(|k| format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1")))
            .collect(),
        Some(serde_json::Value::Array(a)) => (0..a.len()).map(|i| format!("{ptr}/{i}")).collect(),
        _ => Vec::new(),
    };
    for c in &children {
        let mut trial = v.clone();
        if remove_at(&mut trial, c) && parses(&trial) {
            return culprit(v, c, parses);
        }
    }
    // Several children are to blame: isolate one field at a time (keeping an `id`, which
    // deployments need) so the first bad one is found; the caller loops for the rest.
    if let Some(serde_json::Value::Object(m)) = v.pointer(ptr) {
        for (k, child) in m {
            if k == "id" {
                continue;
            }
            let mut only = serde_json::Map::new();
            only.insert(k.clone(), child.clone());
            if let Some(id) = m.get("id") {
                only.insert("id".into(), id.clone());
            }
            let mut trial = v.clone();
            if let Some(slot) = trial.pointer_mut(ptr) {
                *slot = serde_json::Value::Object(only);
            }
            if !parses(&trial) {
                let c = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                return culprit(&trial, &c, parses);
            }
        }
    }
    ptr.to_string()
}

/// Removes the node at a JSON pointer; false when there is none.
fn remove_at(v: &mut serde_json::Value, ptr: &str) -> bool {
    let Some((parent, last)) = ptr.rsplit_once('/') else {
        return false;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(serde_json::Value::Object(m)) => m.remove(&key).is_some(),
        Some(serde_json::Value::Array(a)) => match key.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Pure: reads an app, dropping the fields that do not parse instead of the whole app. Returns the
/// app (if its essential fields parse) and the JSON pointers of the fields dropped.
pub fn tolerant_app(mut v: serde_json::Value) -> (Option<App>, Vec<String>) {
    let parses = |v: &serde_json::Value| serde_json::from_value::<App>(v.clone()).is_ok();
    let mut dropped = Vec::new();
    // Bounded: each round removes one field; a value broken in many places is not worth more.
    for _ in 0..8 {
        if let Ok(a) = serde_json::from_value::<App>(v.clone()) {
            return (Some(a), dropped);
        }
        let keys: Vec<String> = match &v {
            serde_json::Value::Object(m) => m.keys().filter(|k| *k != "id").cloned().collect(),
            _ => return (None, dropped),
        };
        let mut found = None;
        for k in keys {
            let ptr = format!("/{}", k.replace('~', "~0").replace('/', "~1"));
            let mut trial = v.clone();
            if remove_at(&mut trial, &ptr) && parses(&trial) {
                found = Some(culprit(&v, &ptr, &parses));
                break;
            }
        }
        match found {
            Some(p) if remove_at(&mut v, &p) => dropped.push(p),
            _ => return (None, dropped),
        }
    }
    (serde_json::from_value::<App>(v).ok(), dropped)
}

/// Parses `{"apps": [...]}` keeping every app that parses and counting the ones that don't.
pub fn parse_apps_page(
    body: &[u8],
) -> Result<(Vec<App>, usize, Option<String>), serde_json::Error> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        apps: Vec<serde_json::Value>,
        #[serde(default)]
        links: Option<Links>,
    }
    let page: Page = serde_json::from_slice(body)?;
    let mut apps = Vec::with_capacity(page.apps.len());
    let mut skipped = 0;
    for raw in page.apps {
        let label = raw["spec"]["name"]
            .as_str()
            .or(raw["id"].as_str())
            .unwrap_or("?")
            .to_string();
        let (app, dropped) = tolerant_app(raw);
        for field in &dropped {
            tracing::warn!(app = %label, field = %field, "ignoring an App Platform field that does not parse; the rest of the app is read");
        }
        match app {
            Some(a) => apps.push(a),
            None => {
                tracing::warn!(app = %label, "skipping an app whose essential fields do not parse");
                skipped += 1;
            }
        }
    }
    let next = page.links.and_then(|l| l.pages).and_then(|p| p.next);
    Ok((
        apps.into_iter().map(App::normalize).collect(),
        skipped,
        next,
    ))
}

/// Parses `{"deployments": [...]}` the same tolerant way.
pub fn parse_deployments_page(body: &[u8]) -> Result<(Vec<Deployment>, usize), serde_json::Error> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        deployments: Vec<serde_json::Value>,
    }
    let page: Page = serde_json::from_slice(body)?;
    Ok(lenient(page.deployments))
}

#[cfg(test)]
mod tolerant_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bad_spec_field_drops_the_field_not_the_app() {
        let table = [
            (
                json!({"id": "a1", "spec": {"name": "api", "services": [{"name": "web",
                    "health_check": {"http_path": "/h", "initial_delay_seconds": -1, "failure_threshold": -3}}]}}),
                vec![],
            ),
            (
                json!({"id": "a1", "spec": {"name": "api", "services": [{"name": "web",
                    "health_check": {"http_path": "/h", "period_seconds": "ten"}}]}}),
                vec!["/spec/services/0/health_check/period_seconds"],
            ),
            (
                json!({"id": "a1", "spec": {"name": "api", "region": 7, "services": [{"name": "web",
                    "github": {"branch": ["main"]}}]}}),
                vec!["/spec/region", "/spec/services/0/github/branch"],
            ),
        ];
        for (raw, want) in table {
            let (app, dropped) = tolerant_app(raw.clone());
            let app = app.unwrap_or_else(|| panic!("kept: {raw}"));
            assert_eq!(app.name(), "api");
            assert_eq!(app.spec.services.len(), 1, "{raw}");
            let mut dropped = dropped;
            dropped.sort();
            assert_eq!(dropped, want, "{raw}");
        }
        assert!(tolerant_app(json!({"id": 42})).0.is_none());
        assert!(tolerant_app(json!("x")).0.is_none());
    }
}
