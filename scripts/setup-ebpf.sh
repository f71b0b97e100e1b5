#!/usr/bin/env bash
# Installs what building and testing the XDP data plane (ebpf/) needs: the nightly toolchain with
# rust-src (the kernel program is built with -Z build-std=core for bpfel-unknown-none), bpf-linker
# built against that nightly's own LLVM (so its bitcode is always readable), and bpftool/iproute2
# for the tests and the benchmark. Idempotent: when everything is there it only checks.
set -euo pipefail

BPF_LINKER_VERSION=0.13.0

need_apt=()
command -v bpftool >/dev/null 2>&1 || need_apt+=(bpftool)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup-ebpf: please install: ${need_apt[*]} (apt-get, as root)" >&2
        exit 1
    fi
fi

if ! rustup toolchain list | grep -q '^nightly-'; then
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
    rustup component add rust-src --toolchain nightly
fi

# bpf-linker loads the nightly's libLLVM at run time; after a nightly update the old library is
# gone and `--version` fails, which triggers a rebuild.
if ! bpf-linker --version >/dev/null 2>&1; then
    sysroot_lib="$(rustc +nightly --print sysroot)/lib"
    llvm_major="$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
    llvm_so="$(cd "$sysroot_lib" && ls libLLVM-"$llvm_major"-rust-*.so | head -n1)"
    llvm_lib="${llvm_so#lib}"
    llvm_lib="${llvm_lib%.so}"
    echo "setup-ebpf: building bpf-linker $BPF_LINKER_VERSION against $llvm_so (takes a few minutes)" >&2
    RUSTFLAGS="-L $sysroot_lib -l dylib=$llvm_lib -C link-arg=-Wl,-rpath,$sysroot_lib" \
        cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked --force \
        --no-default-features --features "llvm-$llvm_major,no-llvm-linking"
fi
