#!/usr/bin/env bash
# Installs what building, testing and benchmarking mep needs on a fresh Debian machine with a Rust
# toolchain, then builds the release binary with every data plane and the etcd store (target/release/mep).
# Idempotent: a second run only checks (and rebuilds what changed).
set -euo pipefail

need_apt=()
# etcd and etcdctl for the etcd store's tests and the three-node example; protoc builds its client.
for tool in curl:curl wrk:wrk dig:dnsutils knotd:knot kdig:knot-dnsutils unbound:unbound \
    etcd:etcd-server etcdctl:etcd-client protoc:protobuf-compiler; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool##*:}")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
        # Debian starts a single-member etcd on the default ports; the tests start their own.
        if [[ " ${need_apt[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
            systemctl disable --now etcd >/dev/null 2>&1 || true
        fi
    else
        echo "setup: please install: ${need_apt[*]} (apt-get, as root)" >&2
        exit 1
    fi
fi

# The manifests' validator (tests/tests/deploy.rs) and the OpenAPI validator (mep-api's openapi
# tests), from PyPI.
pip_install() {
    python3 -m pip install --quiet "$1" 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages "$1"
}
for tool in kubernetes-validate openapi-spec-validator; do
    command -v "$tool" >/dev/null 2>&1 || pip_install "$tool"
done
# The API fuzzer (tests/tests/openapi_fuzz.rs), pinned: its checks change between releases.
schemathesis --version 2>/dev/null | grep -q "version 4.32.5$" || pip_install schemathesis==4.32.5

# The Debian package (scripts/test-package.sh). Pinned: it warns that it prefers release builds.
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb 3.8.0" ]; then
    cargo install cargo-deb --version 3.8.0 --locked --quiet
fi

# The XDP data plane (ebpf/): the pinned nightly toolchain, rust-src, bpf-linker, bpftool.
"$(dirname "$0")/setup-ebpf.sh"

# The release binary with every data plane (scripts/test.sh skips this: it builds what it tests).
if [ "${MEP_SETUP_NO_BUILD:-0}" != 1 ]; then
    cd "$(dirname "$0")/.."
    cargo build --release --locked --features xdp,etcd --bin mep
fi
