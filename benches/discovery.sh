#!/usr/bin/env bash
# Discovery benchmark of mep's Mp1 service management API.
# Registers 10,000 services across 1,000 apps, then load-tests two discovery queries with wrk
# and reports throughput, p50/p99 latency and the process RSS. Loopback only.
# Usage: benches/discovery.sh   (tunable: DURATION=10s THREADS=2 CONNS=32 REG_CONCURRENCY=32)
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
BENCH_DIR=benches
OUT_DIR=target/bench
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
REG_CONCURRENCY=${REG_CONCURRENCY:-32}
APPS=1000 PER_APP=10 NAMES=1000
ROOT=/mep/mec_service_mgmt/v1

command -v wrk >/dev/null || apt-get install -y wrk
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

cargo build --release -p mep-api --bin mep
BIN=target/release/mep
mkdir -p "$OUT_DIR"

WORK=$(mktemp -d -t mep-bench.XXXXXX)
MEP_PID=
cleanup() {
  local rc=$?
  if [[ -n $MEP_PID ]] && kill -0 "$MEP_PID" 2>/dev/null; then
    kill -TERM "$MEP_PID"
    for _ in $(seq 50); do kill -0 "$MEP_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$MEP_PID" 2>/dev/null; then
      echo "mep did not stop within 5 s of SIGTERM; killing it" >&2
      kill -KILL "$MEP_PID" 2>/dev/null || true
    fi
    local st=0; wait "$MEP_PID" 2>/dev/null || st=$?
    [[ $st -eq 0 ]] || echo "mep exited with status $st after SIGTERM" >&2
  fi
  if [[ $rc -ne 0 && -s $WORK/mep.log ]]; then
    echo "--- last lines of the mep log ---" >&2; tail -n 20 "$WORK/mep.log" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports (the kernel picks them; tiny race until mep binds them).
read -r MP1_PORT MM5_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
BASE=http://127.0.0.1:$MP1_PORT

RUST_LOG=warn "$BIN" serve --dns-addr 127.0.0.1:0 --data-dir "$WORK/data" --insecure-http --no-auth \
  --mp1-addr "127.0.0.1:$MP1_PORT" --mm5-addr "127.0.0.1:$MM5_PORT" >"$WORK/mep.log" 2>&1 &
MEP_PID=$!

alive() { kill -0 "$MEP_PID" 2>/dev/null || { echo "mep (pid $MEP_PID) is no longer running" >&2; exit 1; }; }
for i in $(seq 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$MM5_PORT/health" 2>/dev/null && break
  alive
  [[ $i -lt 100 ]] || { echo "mep did not become healthy within 10 s" >&2; exit 1; }
  sleep 0.1
done
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$MEP_PID/status"; }
echo "mep pid $MEP_PID: Mp1 $BASE, Mm5 127.0.0.1:$MM5_PORT, RSS $(rss_kib) KiB"

echo "registering $((APPS * PER_APP)) services across $APPS apps (concurrency $REG_CONCURRENCY)..."
REG_OUT=$(python3 "$BENCH_DIR/register_services.py" "$BASE" --apps "$APPS" --per-app "$PER_APP" \
  --names "$NAMES" --concurrency "$REG_CONCURRENCY") || { echo "registration failed: $REG_OUT" >&2; exit 1; }
read -r REG_OK REG_FAILED REG_SECS REG_RATE <<<"$REG_OUT"
alive
RSS_REG=$(rss_kib)

# run_wrk MODE LABEL: prints "<req/s> <p50 us> <p99 us> <requests> <non-2xx> <socket errors>"
run_wrk() {
  local log="$OUT_DIR/wrk-$1.txt"
  MODE=$1 NAMES=$NAMES APPS=$APPS wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
    -s "$BENCH_DIR/discovery.lua" "$BASE$ROOT/services" >"$log"
  alive
  awk '$1 == "RESULT" {print $2, $3, $4, $5, $6, $7}' "$log"
}
echo "wrk $DURATION -t$THREADS -c$CONNS: GET $ROOT/services?ser_name=svc-N ..."
R=$(run_wrk name); read -r N_RPS N_P50 N_P99 N_REQ N_BAD N_ERR <<<"$R"
echo "wrk $DURATION -t$THREADS -c$CONNS: GET $ROOT/applications/app-XXXX/services ..."
R=$(run_wrk app); read -r A_RPS A_P50 A_P99 A_REQ A_BAD A_ERR <<<"$R"
RSS_LOAD=$(rss_kib)

ms() { awk -v us="$1" 'BEGIN {printf "%.2f ms", us / 1000}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
{
  echo "mep discovery benchmark — $(date -u +%FT%TZ), $(nproc) CPUs, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "registration: $REG_OK services ($REG_FAILED failed) in ${REG_SECS} s = ${REG_RATE}/s, concurrency $REG_CONCURRENCY"
  printf '%-44s %10s %10s %10s %9s %8s %7s\n' "wrk $DURATION -t$THREADS -c$CONNS" "req/s" p50 p99 requests non-2xx errors
  printf '%-44s %10s %10s %10s %9s %8s %7s\n' "GET /services?ser_name=svc-N (10 matches)" \
    "$N_RPS" "$(ms "$N_P50")" "$(ms "$N_P99")" "$N_REQ" "$N_BAD" "$N_ERR"
  printf '%-44s %10s %10s %10s %9s %8s %7s\n' "GET /applications/app-XXXX/services (10)" \
    "$A_RPS" "$(ms "$A_P50")" "$(ms "$A_P99")" "$A_REQ" "$A_BAD" "$A_ERR"
  echo "RSS: after registration $(mib "$RSS_REG"), after load $(mib "$RSS_LOAD")"
} | tee "$OUT_DIR/discovery.txt"
