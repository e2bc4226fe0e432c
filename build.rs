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
//! server's resident memory halves (docs/BENCHMARKS.md, "Memory"). Only rustc's own `lld` (the
//! default linker of x86_64 Linux since Rust 1.90) reads such a file, so a probe links a trivial
//! Rust program with it first. A symbol the file names that a build lacks (other code, another
//! compiler) is skipped: the layout then falls back towards the default, never a failed link.

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
    println!("cargo::rerun-if-changed={ORDER}");
    println!("cargo::rerun-if-env-changed=DEPLOYWATCH_LINK_MAP");
    let order =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER);
    let mut args = Vec::new();
    if let Ok(map) = std::env::var("DEPLOYWATCH_LINK_MAP") {
        args.push(format!("-Wl,-Map={map},--no-demangle"));
    }
    if std::env::var("PROFILE").as_deref() == Ok("release") && order.is_file() {
        args.push(format!(
            "-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            order.display()
        ));
    }
    if args.is_empty() {
        return;
    }
    if rustc_links_with(&args) {
        for a in args {
            println!("cargo::rustc-link-arg-bins={a}");
        }
    } else {
        println!(
            "cargo::warning=rustc's linker does not take a symbol ordering file (it is not lld); deploywatch is linked in the default layout (about 8 MiB more resident memory)"
        );
    }
}

/// Whether rustc, with this build's target and flags, links a trivial program with `args`.
fn rustc_links_with(args: &[String]) -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let out = std::path::PathBuf::from(var("OUT_DIR"));
    let mut cmd = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
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
    for a in args {
        // The probe's own map goes beside it, not over the real one.
        let a = match a.strip_prefix("-Wl,-Map=") {
            Some(_) => format!("-Wl,-Map={},--no-demangle", out.join("probe.map").display()),
            None => a.clone(),
        };
        cmd.arg("-C").arg(format!("link-arg={a}"));
    }
    let child = cmd
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"fn main() {}\n");
    }
    child.wait().is_ok_and(|s| s.success())
}
