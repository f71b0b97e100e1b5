#!/usr/bin/env bash
# Runs the whole test suite, as CI does: formatting, clippy with warnings as errors, and every test
# of every crate with every feature: the XDP data plane's included (`--all-features` is the one
# switch for the tests that need the pinned nightly, BPF and root; CI runs as root, and those
# tests fail rather than skip without it); then the Debian package is built, installed, checked
# and purged (scripts/test-package.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
MEP_SETUP_NO_BUILD=1 scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo test --workspace --all-targets --all-features --locked "$@"
scripts/test-package.sh
