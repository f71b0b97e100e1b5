//! Builds the kernel programs (`mep-ebpf-ebpf`) with the nightly toolchain for
//! `bpfel-unknown-none` and leaves the object in `OUT_DIR`, where `src/lib.rs` embeds it; the same
//! steps as aya-build, but for a crate outside the workspace. Needs `scripts/setup-ebpf.sh`.

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
    for dir in [
        "mep-ebpf-ebpf/src",
        "mep-ebpf-ebpf/Cargo.toml",
        "mep-ebpf-ebpf/Cargo.lock",
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
    cmd.args(["run", "nightly", "cargo", "build", "--release", "--locked"])
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
            "building mep-ebpf-ebpf failed ({status}); scripts/setup-ebpf.sh installs the nightly toolchain, rust-src and bpf-linker"
        ));
    }
    let object = target_dir.join("bpfel-unknown-none/release/mep-ebpf");
    std::fs::copy(&object, out_dir.join("mep-ebpf.o"))
        .map_err(|e| format!("copying {}: {e}", object.display()))?;
    Ok(())
}
