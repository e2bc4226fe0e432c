//! `deploy/digitalocean/app.yaml` against the App Platform app spec schema (the OpenAPI models in
//! `tests/fixtures/do-app-spec/`, see SOURCES.md there): every key known, required keys present,
//! types, enums, patterns and bounds respected; and what deploywatch itself needs from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Schemas {
    dir: PathBuf,
    files: BTreeMap<String, Value>,
}

impl Schemas {
    fn load(&mut self, file: &str) -> Value {
        if let Some(v) = self.files.get(file) {
            return v.clone();
        }
        let p = self.dir.join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let v: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        self.files.insert(file.to_string(), v.clone());
        v
    }

    /// The schema with `$ref` followed.
    fn resolve(&mut self, s: &Value) -> Value {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let file = r.split('#').next().unwrap_or(r).trim_start_matches("./");
                let target = self.load(file);
                self.resolve(&target)
            }
            None => s.clone(),
        }
    }

    /// Every property a schema allows at this level, through `allOf`, with its sub-schemas.
    fn properties(&mut self, s: &Value, out: &mut BTreeMap<String, Vec<Value>>) {
        let s = self.resolve(s);
        if let Some(props) = s.get("properties").and_then(Value::as_mapping) {
            for (k, v) in props {
                if let Some(k) = k.as_str() {
                    out.entry(k.to_string()).or_default().push(v.clone());
                }
            }
        }
        for sub in s
            .get("allOf")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            self.properties(sub, out);
        }
    }

    fn validate(&mut self, s: &Value, doc: &Value, path: &str, errs: &mut Vec<String>) {
        let s = self.resolve(s);
        for sub in s
            .get("allOf")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            self.validate_local(sub, doc, path, errs);
        }
        if let Some(options) = s.get("oneOf").and_then(Value::as_sequence) {
            let ok = options.iter().any(|o| {
                let mut e = Vec::new();
                self.validate(o, doc, path, &mut e);
                e.is_empty()
            });
            if !ok {
                errs.push(format!("{path}: matches none of the allowed forms"));
            }
        }
        self.validate_local(&s, doc, path, errs);
        if let Some(map) = doc.as_mapping() {
            let mut props = BTreeMap::new();
            self.properties(&s, &mut props);
            if props.is_empty() {
                return;
            }
            for (k, v) in map {
                let k = k.as_str().unwrap_or("?");
                match props.get(k).cloned() {
                    None => errs.push(format!("{path}.{k}: not a key of the app spec")),
                    Some(subs) => {
                        for sub in subs {
                            self.validate(&sub, v, &format!("{path}.{k}"), errs);
                        }
                    }
                }
            }
        }
    }

    /// The constraints of one schema node (not its properties).
    fn validate_local(&mut self, s: &Value, doc: &Value, path: &str, errs: &mut Vec<String>) {
        let s = self.resolve(s);
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "string" => doc.is_string(),
                "integer" => doc.as_i64().is_some() || doc.as_u64().is_some(),
                "number" => doc.is_number(),
                "boolean" => doc.is_bool(),
                "array" => doc.is_sequence(),
                "object" => doc.is_mapping(),
                _ => true,
            };
            if !ok {
                errs.push(format!("{path}: expected {t}, got {doc:?}"));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_sequence)
            && !e.contains(doc)
        {
            errs.push(format!("{path}: {doc:?} is not one of {e:?}"));
        }
        if let Some(text) = doc.as_str() {
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                let re = regex::Regex::new(p).expect("schema pattern");
                if !re.is_match(text) {
                    errs.push(format!("{path}: {text:?} does not match {p}"));
                }
            }
            let n = text.chars().count() as u64;
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
                || s.get("minLength")
                    .and_then(Value::as_u64)
                    .is_some_and(|m| n < m)
            {
                errs.push(format!("{path}: length {n} out of bounds"));
            }
        }
        if let Some(n) = doc.as_f64()
            && (s
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
                || s.get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|m| n < m))
        {
            errs.push(format!("{path}: {n} out of bounds"));
        }
        if let Some(map) = doc.as_mapping() {
            for r in s
                .get("required")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                if let Some(r) = r.as_str()
                    && !map.contains_key(r)
                {
                    errs.push(format!("{path}: missing required key {r}"));
                }
            }
        }
        if let (Some(items), Some(seq)) = (s.get("items"), doc.as_sequence()) {
            for (i, v) in seq.iter().enumerate() {
                self.validate(items, v, &format!("{path}[{i}]"), errs);
            }
        }
    }
}

fn check(doc: &Value) -> Vec<String> {
    let mut schemas = Schemas {
        dir: root().join("tests/fixtures/do-app-spec"),
        files: BTreeMap::new(),
    };
    let spec = schemas.load("app_spec.yml");
    let mut errs = Vec::new();
    schemas.validate(&spec, doc, "spec", &mut errs);
    errs
}

fn app_yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read")).expect("YAML")
}

#[test]
fn the_shipped_app_spec_is_a_valid_app_platform_spec() {
    let doc = app_yaml(&root().join("deploy/digitalocean/app.yaml"));
    let errs = check(&doc);
    assert!(errs.is_empty(), "{errs:#?}");

    // And it runs deploywatch the way deploywatch needs.
    let svc = &doc["services"][0];
    assert_eq!(
        svc["health_check"]["http_path"].as_str(),
        Some("/health/ready")
    );
    let envs: BTreeMap<&str, &Value> = svc["envs"]
        .as_sequence()
        .expect("envs")
        .iter()
        .map(|e| (e["key"].as_str().expect("key"), e))
        .collect();
    let listen = envs["DEPLOYWATCH_LISTEN"]["value"]
        .as_str()
        .expect("listen");
    assert!(
        listen.ends_with(&format!(":{}", svc["http_port"].as_u64().expect("port"))),
        "the service listens where App Platform sends traffic"
    );
    for secret in ["DIGITALOCEAN_TOKEN", "DEPLOYWATCH_WEBHOOK_TOKEN"] {
        assert_eq!(envs[secret]["type"].as_str(), Some("SECRET"), "{secret}");
        assert!(
            envs[secret].get("value").is_none(),
            "{secret} has no value in the repo"
        );
    }
    let db = doc["databases"][0]["name"].as_str().expect("db");
    assert_eq!(
        envs["DEPLOYWATCH_DATABASE_URL"]["value"].as_str(),
        Some(format!("${{{db}.DATABASE_URL}}").as_str())
    );
    assert_eq!(doc["databases"][0]["engine"].as_str(), Some("PG"));
    assert!(
        root()
            .join(svc["dockerfile_path"].as_str().expect("dockerfile"))
            .exists()
    );
}

/// The checker itself catches what it must (so a green result above means something).
#[test]
fn the_schema_check_rejects_bad_specs() {
    let table = [
        ("name: Deploywatch\n", "does not match"),
        ("name: dw\nregion: mars\n", "is not one of"),
        (
            "name: dw\nservices:\n  - name: x\n    htp_port: 1\n",
            "not a key",
        ),
        (
            "name: dw\nservices:\n  - name: x\n    http_port: 70000\n",
            "out of bounds",
        ),
        (
            "name: dw\nservices:\n  - name: x\n    instance_size_slug: huge\n",
            "none of the allowed forms",
        ),
        (
            "name: dw\nservices:\n  - name: x\n    envs:\n      - value: v\n",
            "missing required key key",
        ),
        (
            "name: dw\ndatabases:\n  - name: db\n    engine: ORACLE\n",
            "is not one of",
        ),
        (
            "name: dw\nservices:\n  - name: x\n    instance_count: many\n",
            "expected integer",
        ),
    ];
    for (yaml, want) in table {
        let doc: Value = serde_yaml::from_str(yaml).expect("yaml");
        let errs = check(&doc);
        assert!(errs.iter().any(|e| e.contains(want)), "{yaml}: {errs:?}");
    }
}
