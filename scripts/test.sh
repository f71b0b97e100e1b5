#!/usr/bin/env bash
# Runs the whole test suite: unit tests, in-process end-to-end tests and the tests that drive the
# `mep` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets --locked "$@"
