//! The architecture invariants of `docs/ARCHITECTURE.md` that a test can hold, read from the sources
//! themselves: the pure core imports no I/O crate, only `telemetry::metrics` touches the metrics
//! registry, no file of `src/` is over 600 lines, no two files import each other in a loop, and the
//! simulator stays out of the production library; and the hot-code layout file is whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as a path relative to `src/`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read src dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p.strip_prefix(src()).expect("under src").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The source without comments (so a doc line naming a crate is no import) and without its unit
/// tests (which sit last in a file, as clippy's `items_after_test_module` keeps them).
fn code(rel: &Path) -> String {
    let text = std::fs::read_to_string(src().join(rel)).expect("read source");
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file: `domain/mod.rs` → `["domain"]`, `http/tasks.rs` → `["http", "tasks"]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of a module path.
fn file_of(path: &[String], files: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    for n in (1..=path.len()).rev() {
        let base = path[..n].join("/");
        for cand in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            let p = PathBuf::from(&cand);
            if files.contains(&p) {
                return Some(p);
            }
        }
    }
    None
}

/// Expands a `use` tree (`a::{b::C, d}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.to_string()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

/// The files of `src/` each file imports (by `use`, or by a `crate::`/`super::` path in code).
fn import_graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files: BTreeSet<PathBuf> = rust_files(&src()).into_iter().collect();
    let path_re = regex::Regex::new(r"\b(crate|super)(::[A-Za-z_][A-Za-z0-9_]*)+").expect("re");
    // A `pub use` is a module's face (what it hands on), not an import of its own; a plain `use`
    // (also `pub(crate) use`) is.
    let use_re = regex::Regex::new(r"(?m)^\s*(?:pub\([^)]*\)\s+)?use\s+([A-Za-z0-9_:{}, *\n]+);")
        .expect("re");
    let face_re = regex::Regex::new(r"(?m)^\s*pub\s+use\s+[^;]+;").expect("re");
    let mod_re =
        regex::Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;").expect("re");
    let mut graph = BTreeMap::new();
    for f in &files {
        let text = face_re.replace_all(&code(f), "").into_owned();
        let here = module_of(f);
        let children: BTreeSet<String> = mod_re
            .captures_iter(&text)
            .map(|c| c[1].to_string())
            .collect();
        let mut paths: Vec<String> = path_re
            .find_iter(&text)
            .map(|m| m.as_str().to_string())
            .collect();
        for c in use_re.captures_iter(&text) {
            paths.extend(expand(&c[1].replace(['\n', ' '], "")));
        }
        let mut deps = BTreeSet::new();
        for p in paths {
            let segs: Vec<String> = p.split("::").map(str::to_string).collect();
            let resolved: Vec<String> = match segs.first().map(String::as_str) {
                Some("crate") => segs[1..].to_vec(),
                Some("super") => {
                    let mut base = here.clone();
                    let mut rest = &segs[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                Some("self") => here.iter().chain(&segs[1..]).cloned().collect(),
                Some(first) if children.contains(first) => {
                    here.iter().chain(&segs[..]).cloned().collect()
                }
                _ => continue,
            };
            if let Some(target) = file_of(&resolved, &files)
                && &target != f
            {
                deps.insert(target);
            }
        }
        graph.insert(f.clone(), deps);
    }
    graph
}

/// Every loop of imports, each as the files on it (Tarjan's strongly connected components).
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'a> {
        g: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a PathBuf) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_two_files_of_src_import_each_other_in_a_loop() {
    let graph = import_graph();
    // The graph is real: the poller imports the app state and the domain, say.
    let poller = graph
        .get(Path::new("sources/digitalocean/poller.rs"))
        .expect("the poller is a file of src/");
    assert!(poller.contains(Path::new("app.rs")), "{poller:?}");
    assert!(poller.contains(Path::new("domain/mod.rs")), "{poller:?}");
    let found = circles(&graph);
    let explain = |c: &Vec<PathBuf>| {
        let mut lines = Vec::new();
        for a in c {
            for b in graph.get(a).into_iter().flatten().filter(|b| c.contains(b)) {
                lines.push(format!("  src/{} -> src/{}", a.display(), b.display()));
            }
        }
        lines.join("\n")
    };
    assert!(
        found.is_empty(),
        "import circles (files that import each other in a loop, and the imports that tie them):\n{}",
        found.iter().map(explain).collect::<Vec<_>>().join("\n\n")
    );
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let g: BTreeMap<PathBuf, BTreeSet<PathBuf>> = [
        ("a.rs", vec!["b.rs"]),
        ("b.rs", vec!["c.rs"]),
        ("c.rs", vec!["a.rs"]),
        ("d.rs", vec!["a.rs"]),
    ]
    .into_iter()
    .map(|(k, v)| (PathBuf::from(k), v.into_iter().map(PathBuf::from).collect()))
    .collect();
    assert_eq!(
        circles(&g),
        vec![vec![
            PathBuf::from("a.rs"),
            PathBuf::from("b.rs"),
            PathBuf::from("c.rs")
        ]]
    );
    assert_eq!(
        expand("super::{a::{B, C}, d, self}"),
        vec!["super::a::B", "super::a::C", "super::d", "super"]
    );
}

#[test]
fn the_pure_core_imports_no_io_crate_and_no_io_module() {
    let io_crate = regex::Regex::new(
        r"\b(tokio|sqlx|reqwest|hyper|hyper_util|axum|tower|prometheus|opentelemetry\w*|gix|backon|tracing_opentelemetry)::",
    )
    .expect("re");
    let io_module = regex::Regex::new(
        r"crate::(app|store|http|sources|probes|checks|telemetry|workers|server|cli|config)\b",
    )
    .expect("re");
    let mut offences = Vec::new();
    for dir in ["domain", "tasks"] {
        let files = rust_files(&src().join(dir));
        assert!(!files.is_empty(), "src/{dir} has files");
        for f in files {
            let text = code(&f);
            for m in io_crate.find_iter(&text).chain(io_module.find_iter(&text)) {
                offences.push(format!("src/{}: {}", f.display(), m.as_str()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "the pure core reaches for I/O:\n{}",
        offences.join("\n")
    );
}

#[test]
fn only_telemetry_metrics_touches_the_metrics_registry() {
    let mut offences = Vec::new();
    for f in rust_files(&src()) {
        if f.starts_with("telemetry") {
            continue;
        }
        // `sources::prometheus` is the PromQL client, not the metrics crate.
        let text = code(&f).replace("sources::prometheus::", "");
        if text.contains("prometheus::") {
            offences.push(format!("src/{}", f.display()));
        }
    }
    assert!(
        offences.is_empty(),
        "files outside src/telemetry/ that use the prometheus crate:\n{}",
        offences.join("\n")
    );
}

#[test]
fn no_file_of_src_is_over_600_lines() {
    let long: Vec<String> = rust_files(&src())
        .into_iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(src().join(&f))
                .ok()?
                .lines()
                .count();
            (n > 600).then(|| format!("src/{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over 600 lines; split them by what they are:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_simulator_is_not_in_the_production_library() {
    let files = rust_files(&src());
    assert!(
        files.len() > 10,
        "found the sources under {}",
        src().display()
    );
    let users: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with("cli/demo"))
        .filter(|f| code(f).contains("do_simulator"))
        .map(|f| format!("src/{}", f.display()))
        .collect();
    assert!(
        users.is_empty(),
        "only src/cli/demo/ may use do_simulator (serve's code paths hold no simulator): {users:?}"
    );
    assert!(
        !src().join("simulator.rs").exists() && !src().join("simulator").exists(),
        "the simulator lives in crates/do-simulator"
    );
}

/// `link/hot-code.txt` (build.rs hands it to the linker) is what `scripts/hot-code.sh` writes: one
/// symbol per line, each once, starting from the process's entry points. A hand edit that breaks
/// a line, or a truncated file, would silently put the idle server's code back across the binary.
#[test]
fn the_hot_code_file_is_one_symbol_per_line_and_covers_the_entry_points() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/hot-code.txt");
    let text = std::fs::read_to_string(&path).expect("link/hot-code.txt (scripts/hot-code.sh)");
    let names: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let bad: Vec<&&str> = names
        .iter()
        .filter(|n| n.chars().any(char::is_whitespace))
        .collect();
    assert!(bad.is_empty(), "lines that are not one symbol: {bad:?}");
    let unique: BTreeSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a symbol is listed twice");
    assert!(
        names.len() > 1000,
        "{} symbols: a profile of a whole run lists thousands",
        names.len()
    );
    assert!(
        names.contains(&"main"),
        "no `main`: regenerate with scripts/hot-code.sh"
    );
    // `deploywatch::cli::main` in either of rustc's manglings (legacy `_ZN…`, v0 `_R…`).
    assert!(
        names.iter().any(|n| n.contains("11deploywatch3cli4main")),
        "no deploywatch::cli::main: regenerate with scripts/hot-code.sh"
    );
    assert!(
        text.lines().any(|l| l.starts_with("# rustc: rustc ")),
        "the header names the compiler the file was made with (build.rs compares it)"
    );
}
