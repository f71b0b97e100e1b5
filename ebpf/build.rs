//! Builds the kernel programs (`mep-ebpf-ebpf`) with the nightly toolchain pinned in
//! `mep-ebpf-ebpf/rust-toolchain.toml` for `bpfel-unknown-none` and leaves the object in
//! `OUT_DIR`, where `src/lib.rs` embeds it. The steps of aya-build, but for a crate outside the
//! workspace and with the target feature the parser needs (see ARCHITECTURE.md, "Why not
//! aya-build"). Needs `scripts/setup-ebpf.sh`.

use std::{env, path::PathBuf, process::Command};

fn main() {
    if let Err(e) = build() {
        println!("cargo:warning={e}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let kernel = manifest_dir.join("mep-ebpf-ebpf");
    let toolchain = pinned_toolchain(&kernel.join("rust-toolchain.toml"))?;
    for dir in [
        "mep-ebpf-ebpf/src",
        "mep-ebpf-ebpf/Cargo.toml",
        "mep-ebpf-ebpf/Cargo.lock",
        "mep-ebpf-ebpf/rust-toolchain.toml",
        "mep-ebpf-common/src",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(dir).display()
        );
    }
    let target_dir = out_dir.join("ebpf-target");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").map_err(|e| e.to_string())?;
    let mut cmd = Command::new("rustup");
    cmd.args(["run", &toolchain, "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(kernel.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!(
                "--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Ctarget-feature=+allows-misaligned-mem-access"
            ),
        );
    for key in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cmd.env_remove(key);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run rustup (run scripts/setup-ebpf.sh): {e}"))?;
    if !status.success() {
        return Err(format!(
            "building mep-ebpf-ebpf with {toolchain} failed ({status}); scripts/setup-ebpf.sh installs that toolchain, rust-src and bpf-linker"
        ));
    }
    // mep's programs, and the benchmark's load generator (`examples/dns_xdp_gun.rs`).
    for name in ["mep-ebpf", "mep-bench-gun"] {
        let object = target_dir.join("bpfel-unknown-none/release").join(name);
        std::fs::copy(&object, out_dir.join(format!("{name}.o")))
            .map_err(|e| format!("copying {}: {e}", object.display()))?;
    }
    Ok(())
}

/// The `channel` of the kernel crate's `rust-toolchain.toml`.
fn pinned_toolchain(file: &std::path::Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| format!("{} names no channel", file.display()))
}
