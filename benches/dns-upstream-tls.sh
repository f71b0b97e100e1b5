#!/usr/bin/env bash
# Forwarding to a DNS-over-TLS upstream: mep (`--dns-upstream tls://ADDR#NAME`) against Unbound
# as a forwarder to the same upstream (forward-tls-upstream, which reuses its connections), side
# by side in one run. The upstream is another Unbound serving DoT with NAMES records of TTL 0,
# so no forwarder answers from its cache: every query is a DoT exchange upstream.
# dnsperf sends the names over UDP (CLIENTS clients, 200 outstanding each) for DURATION s, each
# forwarder once per round, ROUNDS rounds. Each row: q/s, mean latency, answers other than NOERROR
# (errors), the forwarder's CPU per query and the upstream's (both from /proc), and how many TCP
# connections were accepted during the run (the kernel's PassiveOpens: the upstream is the only
# TCP server in use then). BASE_BIN, if set, is another mep build measured in the same rounds (a
# before/after comparison); MEP_BIN, if set, replaces the tree's own release build. Writes the
# table to target/bench/dns-upstream-tls.txt.
# Usage: benches/dns-upstream-tls.sh   (tunable: DURATION=5 ROUNDS=3 CLIENTS=4 NAMES=1000
#                                       MEP_BIN= BASE_BIN=)
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
OUT_DIR=target/bench
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}
NAMES=${NAMES:-1000}
# The tree's own build unless MEP_BIN names another.
if [[ -z ${MEP_BIN:-} ]]; then
  cargo build --release --bin mep
  MEP_BIN=target/release/mep
fi
BASE_BIN=${BASE_BIN:-}

missing=()
for tool in dnsperf:dnsperf unbound:unbound dig:dnsutils openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [[ -x /usr/sbin/${tool%%:*} ]] || missing+=("${tool##*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
UNBOUND=$(command -v unbound || echo /usr/sbin/unbound)
mkdir -p "$OUT_DIR"

WORK=$(mktemp -d -t mep-dot-upstream-bench.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A CA and the upstream's certificate for upstream.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=upstream.test \
  -keyout "$WORK/up.key" -out "$WORK/up.csr" 2>/dev/null
openssl x509 -req -in "$WORK/up.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -out "$WORK/up.pem" -extfile <(printf 'subjectAltName=DNS:upstream.test\n') 2>/dev/null

unbound_conf() { # dir port: the common server settings
  cat <<EOF
server:
    interface: 127.0.0.1@$2
    num-threads: 2
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$1"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    # Room for a forwarder that opens a connection per query (Unbound's default is 10 a thread).
    incoming-num-tcp: 1000
EOF
}

declare -A PID PORT
UP_PORT=$(free_port)
mkdir -p "$WORK/up"
{
  unbound_conf "$WORK/up" "$UP_PORT"
  printf '    tls-port: %s\n    tls-service-key: "%s"\n    tls-service-pem: "%s"\n' "$UP_PORT" "$WORK/up.key" "$WORK/up.pem"
  printf '    local-zone: "dot.test." static\n'
  for ((i = 0; i < NAMES; i++)); do
    printf '    local-data: "n%d.dot.test. 0 IN A 198.18.%d.%d"\n' "$i" $((i / 256)) $((i % 256))
  done
  printf 'remote-control:\n    control-enable: no\n'
} >"$WORK/up/unbound.conf"
"$UNBOUND" -d -c "$WORK/up/unbound.conf" >"$WORK/up/log" 2>&1 &
PID[upstream]=$!
PIDS+=("$!")

PORT[unbound]=$(free_port)
mkdir -p "$WORK/fwd"
{
  unbound_conf "$WORK/fwd" "${PORT[unbound]}"
  printf '    tls-cert-bundle: "%s"\n' "$WORK/ca.pem"
  # test. is one of Unbound's default local zones (RFC 6761): ask upstream for it.
  printf '    local-zone: "test." nodefault\n'
  printf 'forward-zone:\n    name: "dot.test."\n    forward-addr: 127.0.0.1@%s#upstream.test\n    forward-tls-upstream: yes\n' "$UP_PORT"
  printf 'remote-control:\n    control-enable: no\n'
} >"$WORK/fwd/unbound.conf"
"$UNBOUND" -d -c "$WORK/fwd/unbound.conf" >"$WORK/fwd/log" 2>&1 &
PID[unbound]=$!
PIDS+=("$!")

start_mep() { # name binary
  local dir="$WORK/$1"
  mkdir -p "$dir"
  PORT[$1]=$(free_port)
  "$2" serve --data-dir "$dir" --insecure-http --no-auth \
    --mp1-addr "127.0.0.1:$(free_port)" --mm5-addr "127.0.0.1:$(free_port)" \
    --dns-addr "127.0.0.1:${PORT[$1]}" \
    --dns-upstream "tls://127.0.0.1:$UP_PORT#upstream.test" --dns-upstream-ca "$WORK/ca.pem" \
    >"$dir/log" 2>&1 &
  PID[$1]=$!
  PIDS+=("$!")
}
SERVERS=(unbound)
[[ -n $BASE_BIN ]] && { start_mep mep-base "$BASE_BIN"; SERVERS+=(mep-base); }
start_mep mep "$MEP_BIN"
SERVERS+=(mep)

for server in "${SERVERS[@]}"; do
  for _ in $(seq 1 100); do
    [[ $(dig +short +tries=1 +time=1 -p "${PORT[$server]}" @127.0.0.1 n7.dot.test A 2>/dev/null) == 198.18.0.7 ]] && break
    sleep 0.2
  done
  [[ $(dig +short +tries=1 +time=1 -p "${PORT[$server]}" @127.0.0.1 n7.dot.test A) == 198.18.0.7 ]] \
    || { echo "$server does not forward n7.dot.test over TLS" >&2; tail -n 5 "$WORK/$server/log" "$WORK/fwd/log" >&2 || true; exit 1; }
done

for ((i = 0; i < NAMES; i++)); do echo "n$i.dot.test A"; done >"$WORK/queries"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${PID[$1]}/stat"; }
HZ=$(getconf CLK_TCK)
# TCP connections this host has accepted so far (Tcp PassiveOpens).
passive_opens() {
  awk '/^Tcp:/ { if (!seen) { for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") col = i; seen = 1 } else print $col }' /proc/net/snmp
}

# run SERVER: prints "<qps> <avg latency us> <lost> <not NOERROR> <forwarder CPU us/q> <upstream CPU us/q>
# <connections accepted>"
run() {
  local out fwd_before up_before opens_before fwd_after up_after conns
  fwd_before=$(cpu_ticks "$1")
  up_before=$(cpu_ticks upstream)
  opens_before=$(passive_opens)
  out=$(dnsperf -s 127.0.0.1 -p "${PORT[$1]}" -d "$WORK/queries" -l "$DURATION" -c "$CLIENTS" -q 200 -t 3 2>&1)
  conns=$(($(passive_opens) - opens_before))
  fwd_after=$(cpu_ticks "$1")
  up_after=$(cpu_ticks upstream)
  awk -v fwd=$((fwd_after - fwd_before)) -v up=$((up_after - up_before)) -v hz="$HZ" -v conns="$conns" '
    /Queries per second:/ { qps = $4 }
    /Average Latency/ { lat = $4 * 1e6 }
    /Queries lost:/ { lost = $3 }
    /Queries completed:/ { done = $3 }
    /Response codes:/ { for (i = 3; i <= NF; i += 3) if ($i == "NOERROR") ok = $(i + 1) }
    END { printf "%.0f %.0f %d %d %.2f %.2f %d\n", qps, lat, lost, done - ok, done ? fwd / hz * 1e6 / done : 0, done ? up / hz * 1e6 / done : 0, conns }' <<<"$out"
}

REPORT="$OUT_DIR/dns-upstream-tls.txt"
{
  echo "# Forwarding to a DoT upstream (Unbound, $NAMES names at TTL 0): dnsperf -c $CLIENTS -q 200, ${DURATION}s, $ROUNDS rounds, $(date -u +%FT%TZ)"
  printf '%-6s %-9s %9s %9s %6s %8s %14s %14s %12s\n' round server 'q/s' 'avg us' lost errors 'fwd CPU us/q' 'up CPU us/q' 'connections'
  for ((round = 1; round <= ROUNDS; round++)); do
    for server in "${SERVERS[@]}"; do
      read -r qps lat lost errors fwd up conns < <(run "$server")
      printf '%-6s %-9s %9s %9s %6s %8s %14s %14s %12s\n' "$round" "$server" "$qps" "$lat" "$lost" "$errors" "$fwd" "$up" "$conns"
      sleep 1
    done
  done
} | tee "$REPORT"
