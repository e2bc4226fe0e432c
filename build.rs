//! Link setting for the `deploywatch` binary: packed relative relocations (`DT_RELR`).
//!
//! A position-independent executable carries one 24-byte relocation record per pointer in its
//! read-only data (about 54,000 of them here, 1.3 MB), and the dynamic loader reads every one at
//! start, so the whole table stays resident in every process. Packed, it is 14 KB: the idle
//! server's resident memory drops by 1.1 to 1.8 MiB (docs/BENCHMARKS.md, "Memory"), the binary
//! stays position-independent (ASLR keeps working). It needs binutils 2.38 and glibc 2.36 (Debian
//! 12, the container image); where the linker cannot do it, a probe link says so and the binary
//! is linked as before.
//!
//! Second, in release builds: the code an idle or busy server runs is laid out together
//! (`link/hot-code.txt`, a symbol ordering file that `scripts/hot-code.sh` regenerates). The
//! kernel maps executable pages in runs around each page it faults in, so code scattered over the
//! 17 MB text made 11 MiB of it resident while about 2.3 MB ever ran; packed at the front, an idle
//! server's resident memory halves (docs/BENCHMARKS.md, "Memory"). Only lld reads such a file
//! (rustc's own lld is the default linker of x86_64 Linux since Rust 1.90), so a probe first links
//! a trivial Rust program with this build's target, linker and flags. A symbol the file names that
//! a build lacks (changed code, another compiler) is skipped: the layout falls back towards the
//! default, never a failed link. The file's header names the compiler it was made with; another
//! one gets a warning.

use std::io::Write;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    // rustc links through `cc` unless a linker is configured; probe that same program.
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    hot_code_first();
    if links_with_relr(&linker) {
        println!("cargo::rustc-link-arg-bins={FLAG}");
    } else {
        println!(
            "cargo::warning=the linker ({linker}) cannot pack relative relocations; deploywatch is linked without (about 1.5 MiB more resident memory)"
        );
    }
}

/// Whether `linker` links a C program with the flag, with no complaint (GNU ld only warns about
/// a `-z` option it does not know, then ignores it).
fn links_with_relr(linker: &str) -> bool {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default())
        .join("relr-probe");
    let child = Command::new(linker)
        .args(["-x", "c", "-", "-o"])
        .arg(&out)
        .arg(FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"int main(void) { return 0; }\n");
    }
    match child.wait_with_output() {
        Ok(o) => o.status.success() && o.stderr.is_empty(),
        Err(_) => false,
    }
}

/// The symbol ordering file for release builds, where rustc's linker takes it; and, when
/// `DEPLOYWATCH_LINK_MAP` names a file, a link map there (what `scripts/hot-code.sh` reads).
fn hot_code_first() {
    const ORDER: &str = "link/hot-code.txt";
    println!("cargo::rerun-if-env-changed=DEPLOYWATCH_LINK_MAP");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join(ORDER);
    // Each linker option travels as `-Xlinker` and the option itself, so no path is split at a
    // comma (as `-Wl,` would).
    let mut args: Vec<String> = Vec::new();
    if let Ok(map) = std::env::var("DEPLOYWATCH_LINK_MAP") {
        let path = std::path::Path::new(&map);
        if path.is_absolute() && path.parent().is_some_and(|d| d.is_dir()) {
            args.extend(["-Xlinker".into(), format!("-Map={map}")]);
            args.extend(["-Xlinker".into(), "--no-demangle".into()]);
        } else {
            println!(
                "cargo::warning=DEPLOYWATCH_LINK_MAP={map:?} is not an absolute path in an existing directory; no link map is written"
            );
        }
    }
    if release {
        if order.is_file() {
            println!("cargo::rerun-if-changed={ORDER}");
            args.extend([
                "-Xlinker".into(),
                format!("--symbol-ordering-file={}", order.display()),
            ]);
            args.extend(["-Xlinker".into(), "--no-warn-symbol-ordering".into()]);
            warn_if_other_compiler(&order);
        } else {
            println!(
                "cargo::warning={ORDER} is missing; deploywatch is linked in the default layout (about 8 MiB more resident memory; scripts/hot-code.sh writes it)"
            );
        }
    }
    if args.is_empty() {
        return;
    }
    match rustc_links_with(&args) {
        Ok(()) => {
            for a in args {
                println!("cargo::rustc-link-arg-bins={a}");
            }
        }
        Err(why) => println!(
            "cargo::warning=rustc's linker refused the hot-code layout or the link map ({why}); deploywatch is linked in the default layout (about 8 MiB more resident memory)"
        ),
    }
}

/// The file's names carry hashes of the compiler that built the profiled binary: another compiler
/// names almost every Rust function differently, and the layout quietly stops working.
fn warn_if_other_compiler(order: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(order) else {
        return;
    };
    let Some(made_with) = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix("# rustc: "))
    else {
        return;
    };
    let ours = rustc()
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !ours.is_empty() && ours != made_with.trim() {
        println!(
            "cargo::warning=link/hot-code.txt was made with {made_with}, this build uses {ours}: most of its names will not match (run scripts/hot-code.sh to regenerate it)"
        );
    }
}

/// Whether rustc, with this build's target, linker and flags, links a trivial program with `args`;
/// else the first line the linker complained with.
fn rustc_links_with(args: &[String]) -> Result<(), String> {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let out = std::path::PathBuf::from(var("OUT_DIR"));
    let mut cmd = rustc();
    cmd.args([
        "--crate-type",
        "bin",
        "--crate-name",
        "hot_code_probe",
        "--edition",
        "2021",
    ])
    .arg("--target")
    .arg(var("TARGET"))
    .arg("-o")
    .arg(out.join("hot-code-probe"))
    .args(
        var("CARGO_ENCODED_RUSTFLAGS")
            .split('\x1f')
            .filter(|f| !f.is_empty()),
    );
    // The linker cargo hands rustc (a `linker` setting): rustc picks the linker's flavour from it.
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    for a in args {
        // The probe's own map goes beside it, not over the real one.
        let a = match a.strip_prefix("-Map=") {
            Some(_) => format!("-Map={}", out.join("probe.map").display()),
            None => a.clone(),
        };
        cmd.arg("-C").arg(format!("link-arg={a}"));
    }
    let child = cmd
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.map_err(|e| format!("running rustc: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"fn main() {}\n");
    }
    let o = child
        .wait_with_output()
        .map_err(|e| format!("running rustc: {e}"))?;
    if o.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    Err(err
        .lines()
        .find(|l| l.contains("error") || l.contains("unrecognized") || l.contains("unknown"))
        .unwrap_or("the probe link failed")
        .trim()
        .chars()
        .take(200)
        .collect())
}

/// The compiler cargo builds this package with.
fn rustc() -> Command {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
}
