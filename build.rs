//! Link setting for the `deploywatch` binary: packed relative relocations (`DT_RELR`).
//!
//! A position-independent executable carries one 24-byte relocation record per pointer in its
//! read-only data (about 54,000 of them here, 1.3 MB), and the dynamic loader reads every one at
//! start, so the whole table stays resident in every process. Packed, it is 14 KB: the idle
//! server's resident memory drops by 1.1 to 1.8 MiB (docs/BENCHMARKS.md, "Memory"), the binary
//! stays position-independent (ASLR keeps working). It needs binutils 2.38 and glibc 2.36 (Debian
//! 12, the container image); where the linker cannot do it, a probe link says so and the binary
//! is linked as before.

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
