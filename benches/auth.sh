#!/usr/bin/env bash
# Authentication benchmark of mep's Mp1: tokens issued per second (POST /mep/token, client
# credentials over HTTP Basic), and the per-request cost of JWT validation: p50/p99 of an
# authorized GET against the same GET with authentication off. Plain HTTP on loopback for both
# runs, so that TLS does not blur the difference. One token is reused, as a client does, so this
# measures the cached path; `cargo bench -p mep-api --bench tokens` gives the cost of the first
# verification of a token (one ES256 verification) and of issuing one.
# Usage: benches/auth.sh   (tunable: DURATION=10s THREADS=2 CONNS=32)
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
OUT_DIR=target/bench
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
ROOT=/mep/mec_service_mgmt/v1
APP=5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f
AK=QVUJMSUMgS0VZLS0tLS0
SK=DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc

command -v wrk >/dev/null || apt-get install -y wrk
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

cargo build --release -p mep-api --bin mep
BIN=target/release/mep
mkdir -p "$OUT_DIR"

WORK=$(mktemp -d -t mep-auth-bench.XXXXXX)
MEP_PID=
stop_mep() {
  if [[ -n $MEP_PID ]] && kill -0 "$MEP_PID" 2>/dev/null; then
    kill -TERM "$MEP_PID"
    for _ in $(seq 50); do kill -0 "$MEP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$MEP_PID" 2>/dev/null || true
    wait "$MEP_PID" 2>/dev/null || true
  fi
  MEP_PID=
}
cleanup() {
  local rc=$?
  stop_mep
  if [[ $rc -ne 0 && -s $WORK/mep.log ]]; then
    echo "--- last lines of the mep log ---" >&2; tail -n 20 "$WORK/mep.log" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_mep DATA_DIR EXTRA_FLAGS...: starts mep on two free loopback ports, sets MP1 and MM5.
start_mep() {
  local data=$1; shift
  read -r MP1_PORT MM5_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  RUST_LOG=warn "$BIN" serve --dns-addr 127.0.0.1:0 --data-dir "$data" --insecure-http \
    --mp1-addr "127.0.0.1:$MP1_PORT" --mm5-addr "127.0.0.1:$MM5_PORT" "$@" >>"$WORK/mep.log" 2>&1 &
  MEP_PID=$!
  MP1=http://127.0.0.1:$MP1_PORT
  MM5=http://127.0.0.1:$MM5_PORT
  for i in $(seq 100); do
    curl -fsS -o /dev/null "$MM5/health" 2>/dev/null && return 0
    kill -0 "$MEP_PID" 2>/dev/null || { echo "mep exited" >&2; exit 1; }
    [[ $i -lt 100 ]] || { echo "mep did not become healthy within 10 s" >&2; exit 1; }
    sleep 0.1
  done
}

SERVICE='{"serName":"rnis","version":"2.1.1","state":"ACTIVE","serializer":"JSON",
  "transportInfo":{"id":"t1","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"2.0",
  "endpoint":{"uris":["http://10.0.0.5:8080/rni/v2"]},"security":{}}}'

# wrk_run LABEL URL [wrk args...]: prints "<req/s> <p50 us> <p99 us> <requests> <non-2xx>"
wrk_run() {
  local label=$1 url=$2; shift 2
  local log="$OUT_DIR/wrk-auth-$label.txt"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" >"$log"
  kill -0 "$MEP_PID" 2>/dev/null || { echo "mep died during $label" >&2; exit 1; }
  awk '
    function us(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v * 1000 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000000 }
      return v
    }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    $1 == "Requests/sec:" { rps = $2 }
    /requests in/ { reqs = $1 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    END { printf "%s %s %s %s %s\n", rps, p50, p99, reqs, (bad == "" ? 0 : bad) }' "$log"
}

# 1. Authentication on.
start_mep "$WORK/auth"
curl -fsS -o /dev/null -X PUT "$MM5/mep/appMng/v1/applications/$APP/confs" \
  -H 'Content-Type: application/json' \
  -d "{\"authInfo\":{\"credentials\":{\"accessKeyId\":\"$AK\",\"secretKey\":\"$SK\"}},\"appInfo\":{\"appName\":\"bench\"}}"
TOKEN=$(curl -fsS -u "$AK:$SK" -d grant_type=client_credentials "$MP1/mep/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -fsS -o /dev/null -X POST "$MP1$ROOT/applications/$APP/services" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$SERVICE"

BASIC=$(printf '%s:%s' "$AK" "$SK" | base64 -w0)
cat >"$WORK/token.lua" <<EOF
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $BASIC"
EOF
echo "wrk $DURATION -t$THREADS -c$CONNS: POST /mep/token (client credentials) ..."
read -r T_RPS T_P50 T_P99 T_REQ T_BAD <<<"$(wrk_run token "$MP1/mep/token" -s "$WORK/token.lua")"
echo "wrk $DURATION -t$THREADS -c$CONNS: GET $ROOT/services with a bearer token ..."
read -r A_RPS A_P50 A_P99 A_REQ A_BAD <<<"$(wrk_run get-auth "$MP1$ROOT/services" -H "Authorization: Bearer $TOKEN")"
stop_mep

# 2. The same GET with authentication off.
start_mep "$WORK/open" --no-auth
curl -fsS -o /dev/null -X POST "$MP1$ROOT/applications/$APP/services" \
  -H 'Content-Type: application/json' -d "$SERVICE"
echo "wrk $DURATION -t$THREADS -c$CONNS: GET $ROOT/services with --no-auth ..."
read -r O_RPS O_P50 O_P99 O_REQ O_BAD <<<"$(wrk_run get-open "$MP1$ROOT/services")"
stop_mep

ms() { awk -v us="$1" 'BEGIN {printf "%.3f ms", us / 1000}'; }
{
  echo "mep auth benchmark — $(date -u +%FT%TZ), $(nproc) CPUs, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  printf '%-46s %10s %10s %10s %9s %8s\n' "wrk $DURATION -t$THREADS -c$CONNS, plain HTTP" "req/s" p50 p99 requests non-2xx
  printf '%-46s %10s %10s %10s %9s %8s\n' "POST /mep/token (ES256 token issued)" \
    "$T_RPS" "$(ms "$T_P50")" "$(ms "$T_P99")" "$T_REQ" "$T_BAD"
  printf '%-46s %10s %10s %10s %9s %8s\n' "GET /services, bearer token" \
    "$A_RPS" "$(ms "$A_P50")" "$(ms "$A_P99")" "$A_REQ" "$A_BAD"
  printf '%-46s %10s %10s %10s %9s %8s\n' "GET /services, --no-auth" \
    "$O_RPS" "$(ms "$O_P50")" "$(ms "$O_P99")" "$O_REQ" "$O_BAD"
} | tee "$OUT_DIR/auth.txt"
