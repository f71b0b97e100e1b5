#!/usr/bin/env bash
# Kernel DNS answers (--dns-xdp): ns per query answered by the XDP program and per query passed
# on, out of 1,000 names, next to a trivial XDP_PASS program measured in the same run, through
# BPF_PROG_TEST_RUN; and the cost of publishing the names and of changing one. Needs root.
# Results: target/bench/xdp-dns.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-ebpf.sh
mkdir -p target/bench
cargo build --release --locked -p mep-ebpf --example dns_bench
{
    echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) CPUs"
    target/release/examples/dns_bench
} | tee target/bench/xdp-dns.txt
