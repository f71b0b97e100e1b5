#!/usr/bin/env bash
# DNS benchmark: mep's DNS server against Knot DNS and Unbound, side by side in one run, all
# serving the same 1,000 A records on loopback ports, measured with dnsperf.
#  (a) local answers: mep from 1,000 DNS rules, Knot from a zone file, Unbound from local-data;
#  (b) cache hits of forwarded names: mep and Unbound forward the zone fwd.mep to the Knot
#      instance, are warmed, then queried; Knot (authoritative only) answers fwd.mep itself, so
#      its figure there is an authoritative one;
#  (c) local answers over DNS over TLS (dnsperf -m dot): mep against Unbound (Knot 3.2 serves no
#      DoT).
# Throughput is dnsperf at full speed (best of ROUNDS runs of DURATION s each); latency
# percentiles come from a run at a fixed LAT_RATE queries/s. Every server gets THREADS threads
# and the same 8 MiB UDP receive buffer (mep asks for it; the others get it as the system
# default, raised while they start).
# CLIENT=lean sends the UDP throughput rows from dns/examples/udp_load.rs instead of dnsperf
# (CLIENTS sockets, WINDOW queries outstanding on each, GSO sends): dnsperf costs more CPU per
# query than the servers, so on two cores it caps them before they are saturated. With
# THREADS=1 every server runs on CPU 1 and the client on CPU 0, so that q/s is the server's.
# Few client ports favour a server that sends a batch's answers to one port as one GSO message
# (mep does); CLIENTS=64 WINDOW=4 is the many-port shape.
# For local answers it also runs the design alternative (dns/examples/hickory_baseline.rs: the
# same rules through hickory-server's Server and a RequestHandler), as the row "hickory".
# Prints a table with the ratios mep/Knot and mep/Unbound (each server's best round) and, for
# local answers, the ratios round by round (a round measures every server once, one after the
# other, so its ratios compare like with like) with their median; writes it all to
# target/bench/dns.txt. On a machine whose speed drifts (a shared VM), many short rounds
# (DURATION=3 ROUNDS=6) and the median of their ratios are steadier than the best rounds.
# Usage: benches/dns.sh   (tunable: DURATION=8 ROUNDS=2 THREADS=2 CLIENTS=4 CLIENT=dnsperf|lean
#                          WINDOW=50 DOT_CLIENTS=4 LAT_RATE=20000 LAT_SECS=3)
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
OUT_DIR=target/bench
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
CLIENTS=${CLIENTS:-4}
# DNS over TLS connections: four, whatever CLIENTS is. mep lets one address hold 32 (Unbound
# sets no such limit), so more from one loopback address measure refusals instead.
DOT_CLIENTS=${DOT_CLIENTS:-4}
CLIENT=${CLIENT:-dnsperf}
WINDOW=${WINDOW:-50}
[[ $CLIENT == dnsperf || $CLIENT == lean ]] || { echo "CLIENT must be dnsperf or lean" >&2; exit 2; }
LAT_RATE=${LAT_RATE:-20000}
LAT_SECS=${LAT_SECS:-3}
RULES=1000

missing=()
for tool in dnsperf:dnsperf knotd:knot kdig:knot-dnsutils unbound:unbound dig:dnsutils python3:python3 openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [[ -x /usr/sbin/${tool%%:*} ]] || missing+=("${tool##*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)
UNBOUND=$(command -v unbound || echo /usr/sbin/unbound)

cargo build --release -p mep-dns --example serve_rules --example hickory_baseline --example udp_load
MEP_BIN=target/release/examples/serve_rules
HICKORY_BIN=target/release/examples/hickory_baseline
LOAD_BIN=target/release/examples/udp_load
# With one thread each and two cores or more: servers on CPU 1, the load generators on CPU 0.
PIN=0
[[ $THREADS == 1 && $(nproc) -ge 2 ]] && PIN=1
ON_CLIENT_CPU=()
[[ $PIN == 1 ]] && ON_CLIENT_CPU=(taskset -c 0)
mkdir -p "$OUT_DIR"

WORK=$(mktemp -d -t mep-dns-bench.XXXXXX)
PIDS=()
RMEM_DEFAULT=$(sysctl -n net.core.rmem_default)
cleanup() {
  local rc=$?
  sysctl -qw net.core.rmem_default="$RMEM_DEFAULT" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then
    for log in "$WORK"/*.log; do
      [[ -s $log ]] && { echo "--- $log ---" >&2; tail -n 15 "$log" >&2; }
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Loopback ports that are free for both UDP and TCP (tiny race until the servers bind).
read -r MEP_PORT KNOT_PORT UNBOUND_PORT HICKORY_PORT MEP_DOT_PORT UNBOUND_DOT_PORT < <(python3 -c '
import socket
ports = []
while len(ports) < 6:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); ports.append(p)
    except OSError:
        pass
    t.close(); u.close()
print(*ports)')

address() { echo "198.18.$(($1 / 256)).$(($1 % 256))"; }

# --- data: zone files, Unbound local-data, query files -----------------------------------------
mkdir -p "$WORK/knot/db" "$WORK/knot/run" "$WORK/unbound"
for zone in bench.mep fwd.mep; do
  {
    echo "\$ORIGIN $zone."
    echo "\$TTL 3600"
    echo "@ SOA ns.$zone. hostmaster.$zone. 1 3600 600 86400 3600"
    echo "@ NS ns"
    echo "ns A 127.0.0.1"
    for i in $(seq 0 $((RULES - 1))); do echo "host$i A $(address "$i")"; done
  } >"$WORK/knot/$zone.zone"
done
for i in $(seq 0 $((RULES - 1))); do echo "host$i.bench.mep A"; done >"$WORK/local.queries"
for i in $(seq 0 $((RULES - 1))); do echo "host$i.fwd.mep A"; done >"$WORK/fwd.queries"

cat >"$WORK/knot.conf" <<EOF
server:
    rundir: "$WORK/knot/run"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: $THREADS
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$WORK/knot"
    file: "%s.zone"
zone:
  - domain: bench.mep
  - domain: fwd.mep
EOF

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$WORK/unbound/tls.key" -out "$WORK/unbound/tls.pem" 2>/dev/null
{
  cat <<EOF
server:
    interface: 127.0.0.1@$UNBOUND_PORT
    interface: 127.0.0.1@$UNBOUND_DOT_PORT
    tls-port: $UNBOUND_DOT_PORT
    tls-service-key: "$WORK/unbound/tls.key"
    tls-service-pem: "$WORK/unbound/tls.pem"
    incoming-num-tcp: 1000
    port: $UNBOUND_PORT
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$WORK/unbound"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: $THREADS
    so-reuseport: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "bench.mep." static
EOF
  for i in $(seq 0 $((RULES - 1))); do echo "    local-data: \"host$i.bench.mep. 3600 IN A $(address "$i")\""; done
  cat <<EOF
remote-control:
    control-enable: no
forward-zone:
    name: "fwd.mep."
    forward-addr: 127.0.0.1@$KNOT_PORT
EOF
} >"$WORK/unbound.conf"

# --- servers --------------------------------------------------------------------------------------
declare -A PID
# The receive buffer mep asks for (4 MiB, which the kernel doubles) as every socket's default
# while the servers start: Knot has no setting for it, and without it Knot drops queries that
# arrive in bursts.
sysctl -qw net.core.rmem_default=8388608 ||
  echo "could not raise net.core.rmem_default (not root?): Knot and Unbound keep $RMEM_DEFAULT bytes" >&2
"$KNOTD" -c "$WORK/knot.conf" >"$WORK/knot.log" 2>&1 &
PID[knot]=$!
"$UNBOUND" -d -c "$WORK/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PID[unbound]=$!
"$MEP_BIN" "127.0.0.1:$MEP_PORT" "$RULES" bench.mep "127.0.0.1:$KNOT_PORT" "$THREADS" "127.0.0.1:$MEP_DOT_PORT" >"$WORK/mep.log" 2>&1 &
PID[mep]=$!
"$HICKORY_BIN" "127.0.0.1:$HICKORY_PORT" "$RULES" bench.mep "$THREADS" >"$WORK/hickory.log" 2>&1 &
PID[hickory]=$!
PIDS=("${PID[@]}")

declare -A PORT=([mep]=$MEP_PORT [knot]=$KNOT_PORT [unbound]=$UNBOUND_PORT [hickory]=$HICKORY_PORT)
declare -A DOT_PORT=([mep]=$MEP_DOT_PORT [unbound]=$UNBOUND_DOT_PORT)
expect_answer() { # server name: the server answers NAME with the address of host 7
  local got
  for _ in $(seq 100); do
    got=$(dig +short +time=1 +tries=1 -p "${PORT[$1]}" @127.0.0.1 "$2" A 2>/dev/null || true)
    [[ $got == "$(address 7)" ]] && return 0
    sleep 0.1
  done
  echo "$1 does not answer $2 with $(address 7) (got: ${got:-nothing})" >&2
  exit 1
}
for server in knot unbound mep; do
  expect_answer "$server" host7.bench.mep
  expect_answer "$server" host7.fwd.mep
done
expect_answer hickory host7.bench.mep
for server in mep unbound; do
  for _ in $(seq 50); do
    got=$(kdig +short +tls +time=1 +retry=0 -p "${DOT_PORT[$server]}" @127.0.0.1 host7.bench.mep A 2>/dev/null || true)
    [[ $got == "$(address 7)" ]] && break
    sleep 0.1
  done
  [[ $got == "$(address 7)" ]] || { echo "$server does not answer over DNS over TLS" >&2; exit 1; }
done
sysctl -qw net.core.rmem_default="$RMEM_DEFAULT" 2>/dev/null || true
# Once they answer, so that threads a server pins itself while starting (Knot's workers) move too.
if [[ $PIN == 1 ]]; then
  for pid in "${PIDS[@]}"; do taskset -a -pc 1 "$pid" >/dev/null; done
fi
echo "servers up: mep :$MEP_PORT, Knot $("$KNOTD" --version | awk '{print $NF}') :$KNOT_PORT, Unbound $("$UNBOUND" -V | awk 'NR==1 {print $2}') :$UNBOUND_PORT"

# Warm the caches of mep and Unbound with every forwarded name.
for server in mep unbound; do
  dnsperf -s 127.0.0.1 -p "${PORT[$server]}" -d "$WORK/fwd.queries" -n 1 >/dev/null
done

# --- measurements ---------------------------------------------------------------------------------
# The CPU time of the children of the (sub)shell so far, from `times` (whose second line is theirs),
# as "Client CPU seconds: S". Not in a pipeline: a forked shell starts with no children's time.
client_cpu() {
  times >"$WORK/times"
  awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } }
    END { printf "Client CPU seconds: %.3f\n", s }' "$WORK/times"
}
# CPU time (user + system) of a server so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${PID[$1]}/stat"; }
TICKS_PER_SEC=$(getconf CLK_TCK)
# throughput SERVER QUERIES [dot]: prints "<qps> <avg latency us> <lost> <non-NOERROR> <server CPU
# us per query> <client's share of a core>"; a client near 1.00 of its core set the q/s itself.
throughput() {
  local out before after port=${PORT[$1]} mode=udp clients=$CLIENTS
  [[ ${3:-} == dot ]] && port=${DOT_PORT[$1]} mode=dot clients=$DOT_CLIENTS
  before=$(cpu_ticks "$1")
  if [[ $CLIENT == lean && $mode == udp ]]; then
    # udp_load's one line, in the shape of dnsperf's report.
    out=$("${ON_CLIENT_CPU[@]}" "$LOAD_BIN" "127.0.0.1:$port" "$2" "$DURATION" "$CLIENTS" "$WINDOW" | awk '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "Queries per second: %s\nAverage Latency (s): %.6f\nQueries lost: %s\n", v["qps"], v["avg_us"] / 1e6, v["lost"]
      printf "Queries completed: %s\nResponse codes: NOERROR %d (x%%)\n", v["answered"], v["answered"] - v["not_noerror"] }'
      client_cpu)
  else
    out=$("${ON_CLIENT_CPU[@]}" dnsperf -m "$mode" -s 127.0.0.1 -p "$port" -d "$2" -l "$DURATION" -c "$clients" -q 200 2>&1
      client_cpu)
  fi
  after=$(cpu_ticks "$1")
  awk -v ticks=$((after - before)) -v hz="$TICKS_PER_SEC" -v duration="$DURATION" '
    /Queries per second:/ { qps = $4 }
    /Average Latency/ { lat = $4 * 1e6 }
    /Queries lost:/ { lost = $3 }
    /Queries completed:/ { done = $3 }
    /Response codes:/ { for (i = 3; i <= NF; i += 3) if ($i == "NOERROR") ok = $(i + 1) }
    /^Client CPU seconds:/ { client = $4 }
    END { printf "%.0f %.0f %d %d %.2f %.2f\n", qps, lat, lost, done - ok, done ? ticks / hz * 1e6 / done : 0, client / duration }' <<<"$out"
}
# latency SERVER QUERIES [dot]: prints "<p50 us> <p99 us>" at LAT_RATE queries/s
latency() {
  local port=${PORT[$1]} mode=udp clients=$CLIENTS
  [[ ${3:-} == dot ]] && port=${DOT_PORT[$1]} mode=dot clients=$DOT_CLIENTS
  "${ON_CLIENT_CPU[@]}" dnsperf -m "$mode" -s 127.0.0.1 -p "$port" -d "$2" -l "$LAT_SECS" -Q "$LAT_RATE" -c "$clients" -v 2>/dev/null |
    awk '/^> / { print $NF * 1e6 }' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan nan"; exit } printf "%.0f %.0f\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1] }'
}

declare -A QPS LAT LOST BAD P50 P99 CPU CLIENT_CPU ROUND_QPS ROUND_CPU
SCENARIOS=(local cached dot)
declare -A QUERIES=([local]="$WORK/local.queries" [cached]="$WORK/fwd.queries" [dot]="$WORK/local.queries")
declare -A SERVERS=([local]="mep knot unbound hickory" [cached]="mep knot unbound" [dot]="mep unbound")
declare -A MODE=([local]=udp [cached]=udp [dot]=dot)
for round in $(seq "$ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for server in ${SERVERS[$scenario]}; do
      read -r qps lat lost bad cpu client < <(throughput "$server" "${QUERIES[$scenario]}" "${MODE[$scenario]}")
      key=$scenario/$server
      echo "round $round $key: $qps q/s, avg $lat us, lost $lost, not NOERROR $bad, server CPU $cpu us/query, client $client of a core"
      if [[ -z ${QPS[$key]:-} || $qps -gt ${QPS[$key]} ]]; then
        QPS[$key]=$qps LAT[$key]=$lat CPU[$key]=$cpu CLIENT_CPU[$key]=$client
      fi
      LOST[$key]=$((${LOST[$key]:-0} + lost)) BAD[$key]=$((${BAD[$key]:-0} + bad))
      ROUND_QPS[$round/$key]=$qps ROUND_CPU[$round/$key]=$cpu
    done
  done
done
for scenario in "${SCENARIOS[@]}"; do
  for server in ${SERVERS[$scenario]}; do
    read -r P50["$scenario/$server"] P99["$scenario/$server"] < <(latency "$server" "${QUERIES[$scenario]}" "${MODE[$scenario]}")
  done
done
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "a server died during the run" >&2; exit 1; }
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
{
  echo "DNS benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $THREADS server threads each,"
  if [[ $CLIENT == lean ]]; then
    echo "UDP q/s from udp_load ($CLIENTS sockets x $WINDOW outstanding), DoT from dnsperf ($DOT_CLIENTS clients),"
  else
    echo "dnsperf $CLIENTS clients ($DOT_CLIENTS over TLS),"
  fi
  [[ $PIN == 1 ]] && echo "servers on CPU 1, load generators on CPU 0,"
  echo "best of $ROUNDS x ${DURATION}s; latency percentiles at $LAT_RATE q/s (dnsperf)"
  echo "1,000 A records: mep DNS rules / Knot zone file / Unbound local-data; loopback only"
  echo
  printf '%-8s %-8s %12s %10s %9s %9s %12s %7s %6s %7s\n' scenario server "queries/s" "avg(us)" "p50(us)" "p99(us)" "CPU us/query" lost errors client
  for scenario in "${SCENARIOS[@]}"; do
    for server in ${SERVERS[$scenario]}; do
      key=$scenario/$server
      printf '%-8s %-8s %12s %10s %9s %9s %12s %7s %6s %7s\n' "$scenario" "$server" "${QPS[$key]}" "${LAT[$key]}" \
        "${P50[$key]}" "${P99[$key]}" "${CPU[$key]}" "${LOST[$key]}" "${BAD[$key]}" "${CLIENT_CPU[$key]}"
    done
  done
  echo
  printf '%-8s %13s %13s %13s %13s %13s %13s\n' scenario "q/s mep/Knot" "q/s mep/Unb" \
    "p99 mep/Knot" "p99 mep/Unb" "CPU mep/Knot" "CPU mep/Unb"
  for scenario in local cached; do
    printf '%-8s %13s %13s %13s %13s %13s %13s\n' "$scenario" \
      "$(ratio "${QPS[$scenario/mep]}" "${QPS[$scenario/knot]}")" \
      "$(ratio "${QPS[$scenario/mep]}" "${QPS[$scenario/unbound]}")" \
      "$(ratio "${P99[$scenario/mep]}" "${P99[$scenario/knot]}")" \
      "$(ratio "${P99[$scenario/mep]}" "${P99[$scenario/unbound]}")" \
      "$(ratio "${CPU[$scenario/mep]}" "${CPU[$scenario/knot]}")" \
      "$(ratio "${CPU[$scenario/mep]}" "${CPU[$scenario/unbound]}")"
  done
  printf '%-8s %13s %13s %13s %13s %13s %13s\n' dot n/a \
    "$(ratio "${QPS[dot/mep]}" "${QPS[dot/unbound]}")" n/a \
    "$(ratio "${P99[dot/mep]}" "${P99[dot/unbound]}")" n/a \
    "$(ratio "${CPU[dot/mep]}" "${CPU[dot/unbound]}")"
  printf '%-8s %13s %13s\n' "" "q/s mep/hickory" "CPU mep/hickory"
  printf '%-8s %13s %13s\n' local "$(ratio "${QPS[local/mep]}" "${QPS[local/hickory]}")" \
    "$(ratio "${CPU[local/mep]}" "${CPU[local/hickory]}")"
  echo
  echo "local answers round by round (the table above takes each server's best round):"
  round_qps=() round_cpu=()
  for round in $(seq "$ROUNDS"); do
    round_qps+=("$(ratio "${ROUND_QPS[$round/local/mep]}" "${ROUND_QPS[$round/local/knot]}")")
    round_cpu+=("$(ratio "${ROUND_CPU[$round/local/mep]}" "${ROUND_CPU[$round/local/knot]}")")
    printf '  round %s: q/s mep/Knot %s, CPU mep/Knot %s\n' "$round" "${round_qps[-1]}" "${round_cpu[-1]}"
  done
  printf '  median of the %s rounds: q/s mep/Knot %s, CPU mep/Knot %s\n' "$ROUNDS" \
    "$(median "${round_qps[@]}")" "$(median "${round_cpu[@]}")"
  # The goal of the DNS issue: 1.5x Knot's q/s at 0.67x its CPU per query, round by round.
  met=0
  for i in "${!round_qps[@]}"; do
    awk -v q="${round_qps[$i]}" -v c="${round_cpu[$i]}" 'BEGIN { exit !(q >= 1.5 && c <= 0.67) }' && met=$((met + 1))
  done
  printf '  rounds with q/s >= 1.5x and CPU <= 0.67x Knot'"'"'s: %s of %s\n' "$met" "$ROUNDS"
  echo
  echo "q/s: higher is better; p99 and CPU (server CPU time per answered query): lower is better."
  echo "client: the load generator's CPU time over the round's length (its best round), in cores;"
  echo "near 1.00 with THREADS=1 (pinned to one core) the client may have set that row's q/s, a floor"
  echo "for the server's."
  if [[ $CLIENT == dnsperf ]]; then
    echo "On $(nproc) cores dnsperf itself takes about one, so q/s is capped by the load generator"
    echo "as much as by the server; CPU us/query is the server's own cost (CLIENT=lean THREADS=1"
    echo "gives each server a core of its own and a client that can saturate it)."
  else
    echo "CPU us/query is the server's own cost. mep sends a batch's answers to one client port as"
    echo "one GSO message (Knot and Unbound do not), which pays most with few ports (CLIENTS=4);"
    echo "CLIENTS=64 WINDOW=4 is a many-port shape."
  fi
  echo "cached: mep and Unbound answer from their caches (upstream: Knot); Knot's row is its"
  echo "authoritative answer for the same names (it has no cache)."
  echo "hickory: the same rules through hickory-server's Server + RequestHandler (local only)."
  echo "dot: local answers over DNS over TLS, $DOT_CLIENTS dnsperf connections (Knot 3.2 has no DoT)."
} | tee "$OUT_DIR/dns.txt"
