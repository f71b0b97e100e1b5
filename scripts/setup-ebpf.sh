#!/usr/bin/env bash
# Installs what building and testing the XDP data plane (ebpf/) needs: the nightly toolchain pinned
# in ebpf/mep-ebpf-ebpf/rust-toolchain.toml with rust-src (the kernel program is built with
# -Z build-std=core for bpfel-unknown-none), bpf-linker built against that nightly's own LLVM (so
# its bitcode is always readable), and bpftool/iproute2 for the tests and the benchmark.
# Idempotent: when everything is there it only checks.
set -euo pipefail

TOOLCHAIN_FILE="$(dirname "$0")/../ebpf/mep-ebpf-ebpf/rust-toolchain.toml"
NIGHTLY="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$TOOLCHAIN_FILE")"
[ -n "$NIGHTLY" ] || { echo "setup-ebpf: no channel in $TOOLCHAIN_FILE" >&2; exit 1; }

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

if ! rustup toolchain list | grep -q "^$NIGHTLY-"; then
    rustup toolchain install "$NIGHTLY" --profile minimal
fi
if ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
    rustup component add rust-src --toolchain "$NIGHTLY"
fi

# bpf-linker loads the pinned nightly's libLLVM at run time: rebuild it when it does not run or
# was built against another toolchain.
linked_to_pin() {
    ldd "$(command -v bpf-linker)" 2>/dev/null | grep -q "toolchains/$NIGHTLY-"
}
if ! bpf-linker --version >/dev/null 2>&1 || ! linked_to_pin; then
    sysroot_lib="$(rustc +"$NIGHTLY" --print sysroot)/lib"
    llvm_major="$(rustc +"$NIGHTLY" -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
    llvm_so="$(cd "$sysroot_lib" && ls libLLVM-"$llvm_major"-rust-*.so | head -n1)"
    llvm_lib="${llvm_so#lib}"
    llvm_lib="${llvm_lib%.so}"
    echo "setup-ebpf: building bpf-linker $BPF_LINKER_VERSION against $llvm_so (takes a few minutes)" >&2
    RUSTFLAGS="-L $sysroot_lib -l dylib=$llvm_lib -C link-arg=-Wl,-rpath,$sysroot_lib" \
        cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked --force \
        --no-default-features --features "llvm-$llvm_major,no-llvm-linking"
fi
