//! The simulator stays out of serve's code paths: only `src/demo/` names the `do_simulator` crate.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn only_the_demo_uses_the_simulator() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 10,
        "found the sources under {}",
        src.display()
    );
    let demo = src.join("demo");
    let users: Vec<String> = files
        .iter()
        .filter(|p| !p.starts_with(&demo))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("do_simulator")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        users.is_empty(),
        "only src/demo/ may use do_simulator (the production library holds no simulator): {users:?}"
    );
    assert!(
        !src.join("simulator.rs").exists() && !src.join("simulator").exists(),
        "the simulator lives in crates/do-simulator"
    );
}
