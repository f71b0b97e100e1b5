#!/usr/bin/env bash
# XDP data plane benchmark: ns per packet through BPF_PROG_TEST_RUN with 1, 100 and 10,000 ACTIVE
# rules (plain and GTP-U packets) next to a trivial XDP_PASS program measured in the same run, and
# the time to publish 10,000 rules. Needs root. Results: target/bench/xdp.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-ebpf.sh
mkdir -p target/bench
cargo build --release --locked -p mep-ebpf --example xdp_bench
{
    echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) CPUs"
    target/release/examples/xdp_bench
} | tee target/bench/xdp.txt
