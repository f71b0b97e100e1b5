#!/usr/bin/env bash
# Kernel DNS answers over a veth pair, next to the userspace paths, in one run: dnsperf in a client
# namespace (pinned to CPU 0) asks a server namespace for 1,000 A names (`host<i>.bench.mep`),
# served in turn by
#   mep-xdp      mep's XDP program in generic mode (`--dns-xdp`; ebpf/examples/dns_xdp_serve.rs);
#   mep-xdp-nat  the same in native mode (the client's veth then carries a pass-all XDP program,
#                which native XDP_TX into a veth needs);
#   mep-udp      mep's userspace DNS server, one thread (dns/examples/serve_rules.rs);
#   knot-xdp     Knot DNS in its XDP mode (`xdp: listen:`), one worker;
#   knot-udp     Knot DNS on its UDP sockets, one worker.
# The server side gets CPU 1: user-space servers are pinned there, and so is the kernel thread
# that does the server veth's receive work (threaded NAPI): XDP native or generic, the UDP stack,
# Knot's AF_XDP copies. The client veth's receive thread is pinned to CPU 0 with the client. Per
# answered query: "cpu1" is CPU 1's busy time, "other" the rest of the machine's minus dnsperf's
# own, "total" the whole machine's (dnsperf included). An answer's transmit into the client veth
# is done by its sender, on CPU 1; "total" is the one figure that hides nothing.
# Best of ROUNDS runs of DURATION s. Writes target/bench/xdp-dns-veth.txt.
#
# CLIENT=kxdpgun replaces dnsperf with Knot's kxdpgun (AF_XDP on the client veth, on CPU 0),
# which sends far faster than dnsperf: each row is offered RATES queries/s in turn and its
# capacity is the most replies/s it sustained with at least 99% of the queries answered, with the
# CPU per reply at that rate; its peak the most replies/s at any rate, with CPU 1's time per reply
# there. kxdpgun's own XDP program on the client veth takes the place of the pass-all peer the
# native rows need, and the native rows' XDP runs on CPU 1 like the others. Writes
# target/bench/xdp-dns-veth-kxdpgun.txt.
#
# CLIENT=gun sends from the kernel instead (ebpf/examples/dns_xdp_gun.rs: an XDP program run by
# BPF_PROG_TEST_RUN in live-frame mode on CPU 0 at idle priority, bursts of 10 queries from 1,000
# ports, answers counted by the same program on the client veth), several times faster than
# kxdpgun. Its frames
# reach the server veth as XDP frames, as a NIC driver's would, where kxdpgun's socket buffers
# are copied into XDP frames on the server's CPU. The generator keeps CPU 0 busy while it runs,
# so only CPU 1's figures mean anything in this mode. Writes target/bench/xdp-dns-veth-gun.txt.
# Usage (root): benches/xdp-dns-veth.sh   (tunable: DURATION=6 ROUNDS=2 CLIENTS=4 CLIENT=dnsperf
#               RATES="50000 75000 100000 125000 150000 200000 300000 400000 600000 1000000"
#               NAPI_PRIO=50, the client veth's NAPI thread's SCHED_FIFO priority, 0 for none)
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-4}
CLIENT=${CLIENT:-dnsperf}
NAPI_PRIO=${NAPI_PRIO:-50}
if [[ $CLIENT == gun ]]; then
  RATES=${RATES:-50000 75000 100000 150000 200000 300000 500000 700000 1000000 1400000 2000000 3000000}
else
  RATES=${RATES:-50000 75000 100000 125000 150000 200000 300000 400000 600000 1000000}
fi
RULES=1000
OUT_DIR=target/bench
[[ $(id -u) == 0 ]] || { echo "run as root (namespaces, XDP)" >&2; exit 1; }
missing=()
for tool in dnsperf:dnsperf knotd:knot dig:dnsutils kxdpgun:knot-dnsutils ethtool:ethtool; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [[ -x /usr/sbin/${tool%%:*} ]] || missing+=("${tool##*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)

cargo build --release -p mep-ebpf --example dns_xdp_serve --example dns_xdp_gun
cargo build --release -p mep-dns --example serve_rules
XDP_BIN=target/release/examples/dns_xdp_serve
UDP_BIN=target/release/examples/serve_rules
GUN_BIN=target/release/examples/dns_xdp_gun
mkdir -p "$OUT_DIR"

WORK=$(mktemp -d -t mep-xdp-dns.XXXXXX)
CLI=mepdc$$ SRV=mepds$$
SERVER_PIDS=()
stop_servers() {
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SERVER_PIDS=()
  # Knot leaves its XDP program attached (through netlink): take it off. A dead process's XDP
  # links go a moment later. The next row attaches its own.
  ip -n "$SRV" link set dev s0 xdp off 2>/dev/null || true
  for _ in $(seq 50); do
    ip -n "$SRV" link show s0 2>/dev/null | grep -q 'xdp' || ip -n "$CLI" link show c0 2>/dev/null | grep -q 'xdp' || break
    sleep 0.1
  done
}
cleanup() {
  local rc=$?
  stop_servers
  if [[ $rc -ne 0 ]]; then
    for log in "$WORK"/*.log; do
      [[ -s $log ]] && { echo "--- $log ---" >&2; tail -n 15 "$log" >&2; }
    done
  fi
  ip netns del "$CLI" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$CLI"
ip netns add "$SRV"
ip link add c0 netns "$CLI" type veth peer name s0 netns "$SRV"
ip -n "$CLI" addr add 10.77.0.1/24 dev c0
ip -n "$SRV" addr add 10.77.0.2/24 dev s0
for ns in "$CLI" "$SRV"; do
  ip -n "$ns" link set lo up
done
ip -n "$CLI" link set c0 up
ip -n "$SRV" link set s0 up
# Each veth end gets a NAPI instance (GRO on) served by a kernel thread (threaded NAPI), pinned
# to its side's CPU: all receive work for the server's veth, XDP native or generic, the UDP stack
# and Knot's AF_XDP copies included, runs on CPU 1, and the client's on CPU 0. Without this a veth
# receives in the softirq of whichever CPU transmitted, and the two sides' costs mix.
for end in "$CLI c0" "$SRV s0"; do
  read -r ns dev <<<"$end"
  # Without TSO a veth hands every UDP datagram to the peer's NAPI (with it, only GSO-able ones).
  ip netns exec "$ns" ethtool -K "$dev" gro on tso off >/dev/null
  ip netns exec "$ns" sh -c "echo 1 > /sys/class/net/$dev/threaded"
done
# The client veth's NAPI thread also gets a real-time priority, as the client's receive work
# would have in softirq context: at normal priority it can wait long enough behind the client
# for its 256-frame ring to overflow at a tenth of the rate it sustains. The server's stays at
# normal priority: real-time, it starves the userspace servers on its CPU under overload.
pin_napi() { # pins every NAPI thread of c0 to CPU 0 (at SCHED_FIFO NAPI_PRIO) and of s0 to CPU 1
  local pid name
  for pid in $(pgrep '^napi/[cs]0-'); do
    name=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    case $name in
      napi/c0-*)
        taskset -pc 0 "$pid" >/dev/null
        if ((NAPI_PRIO > 0)); then chrt -f -p "$NAPI_PRIO" "$pid"; else chrt -o -p 0 "$pid"; fi
        ;;
      napi/s0-*) taskset -pc 1 "$pid" >/dev/null ;;
    esac
  done
}
pin_napi
in_cli() { ip netns exec "$CLI" "$@"; }

address() { echo "198.18.$(($1 / 256)).$(($1 % 256))"; }
for i in $(seq 0 $((RULES - 1))); do echo "host$i.bench.mep A"; done >"$WORK/queries"
mkdir -p "$WORK/knot/db" "$WORK/knot/run"
{
  echo "\$ORIGIN bench.mep."
  echo "\$TTL 3600"
  echo "@ SOA ns.bench.mep. hostmaster.bench.mep. 1 3600 600 86400 3600"
  echo "@ NS ns"
  echo "ns A 10.77.0.2"
  for i in $(seq 0 $((RULES - 1))); do echo "host$i A $(address "$i")"; done
} >"$WORK/knot/bench.mep.zone"
knot_conf() { # XDP: on or off
  cat <<CONF
server:
    rundir: "$WORK/knot/run"
    listen: 10.77.0.2@53
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
CONF
  [[ $1 == on ]] && printf 'xdp:\n    listen: s0@53\n    udp: on\n'
  cat <<CONF
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
CONF
}

# Servers start with `ip netns exec` itself in the background (not through a function), so that
# $! is the server (ip and taskset exec it) and stop_servers reaches it.
start() { # ROW: starts the servers of ROW in the server namespace
  case $1 in
    mep-xdp | mep-xdp-nat)
      local mode=generic
      [[ $1 == mep-xdp-nat ]] && mode=native
      ip netns exec "$SRV" taskset -c 1 "$XDP_BIN" s0 "$mode" "$RULES" bench.mep >"$WORK/$1.log" 2>&1 &
      SERVER_PIDS+=($!)
      if [[ $mode == native ]]; then
        ip netns exec "$CLI" "$XDP_BIN" c0 native 0 none >"$WORK/peer.log" 2>&1 &
        PEER_PID=$!
        SERVER_PIDS+=($!)
      fi
      ;;
    mep-udp)
      ip netns exec "$SRV" taskset -c 1 "$UDP_BIN" 10.77.0.2:53 "$RULES" bench.mep 127.0.0.1:9 1 >"$WORK/$1.log" 2>&1 &
      SERVER_PIDS+=($!)
      ;;
    knot-xdp | knot-udp)
      local xdp=off
      [[ $1 == knot-xdp ]] && xdp=on
      knot_conf "$xdp" >"$WORK/$1.conf"
      ip netns exec "$SRV" taskset -c 1 "$KNOTD" -c "$WORK/$1.conf" >"$WORK/$1.log" 2>&1 &
      SERVER_PIDS+=($!)
      KNOT_PID=$!
      ;;
  esac
  local got
  for _ in $(seq 100); do
    got=$(in_cli dig +short +time=1 +tries=1 @10.77.0.2 host7.bench.mep A 2>/dev/null || true)
    if [[ $got == "$(address 7)" ]]; then
      # Knot pins its workers to CPUs of its own choosing (CPU 0 for the first): back to CPU 1.
      [[ $1 == knot-* ]] && taskset -a -pc 1 "$KNOT_PID" >/dev/null
      return 0
    fi
    sleep 0.1
  done
  echo "$1 does not answer (got: ${got:-nothing})" >&2
  exit 1
}

busy() { # CPU_LINE: busy ticks of that /proc/stat line (user nice system irq softirq steal)
  awk -v cpu="$1" '$1 == cpu { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
HZ=$(getconf CLK_TCK)
# run ROW: prints "<qps> <lost> <non-NOERROR> <cpu1 us/q> <other us/q> <total us/q> <completed>"
run() {
  local c1 all c1_after all_after
  c1=$(busy cpu1) all=$(busy cpu)
  # dnsperf's own CPU: the children's time of the shell that waited for it (fields 16 and 17).
  in_cli taskset -c 0 sh -c 'dnsperf -s 10.77.0.2 -p 53 -d "$1" -l "$2" -c "$3" -q 200 >"$4" 2>&1
    awk "{ print \$16 + \$17 }" /proc/$$/stat >"$5"' sh "$WORK/queries" "$DURATION" "$CLIENTS" \
    "$WORK/dnsperf.out" "$WORK/dnsperf.ticks"
  c1_after=$(busy cpu1) all_after=$(busy cpu)
  awk -v c1=$((c1_after - c1)) -v all=$((all_after - all)) -v hz="$HZ" -v dp="$(<"$WORK/dnsperf.ticks")" '
    /Queries per second:/ { qps = $4 }
    /Queries lost:/ { lost = $3 }
    /Queries completed:/ { done = $3 }
    /Response codes:/ { for (i = 3; i <= NF; i += 3) if ($i == "NOERROR") ok = $(i + 1) }
    END {
      other = all - c1 - dp; if (other < 0) other = 0
      us = 1e6 / hz / done
      printf "%.0f %d %d %.2f %.2f %.2f %d\n", qps, lost, done - ok, c1 * us, other * us, all * us, done
    }' "$WORK/dnsperf.out"
}

# gun RATE: the client (kxdpgun or dns_xdp_gun) offers RATE queries/s; prints
# "<replies/s> <replied %> <cpu1 us/r> <total us/r> <replies>"
gun() {
  local c1 all c1_after all_after out
  c1=$(busy cpu1) all=$(busy cpu)
  if [[ $CLIENT == kxdpgun ]]; then
    out=$(in_cli kxdpgun -t "$DURATION" -Q "$1" -F 0 -I c0 -i "$WORK/queries" 10.77.0.2 2>&1)
  else
    out=$(in_cli taskset -c 0 chrt --idle 0 "$GUN_BIN" c0 "$SRV_MAC" 10.77.0.1 10.77.0.2 "$RULES" bench.mep "$1" \
      "$DURATION" 2>&1)
  fi
  c1_after=$(busy cpu1) all_after=$(busy cpu)
  awk -v c1=$((c1_after - c1)) -v all=$((all_after - all)) -v hz="$HZ" -v d="$DURATION" '
    /total queries:/ { q = $3 }
    /total replies:/ { r = $3 }
    /^sent [0-9]+ replies [0-9]+$/ { q = $2; r = $4 }
    END {
      if (r == 0) { print "0 0 0 0 0"; exit }
      us = 1e6 / hz / r
      printf "%.0f %.1f %.2f %.2f %d\n", r / d, 100 * r / q, c1 * us, all * us, r
    }' <<<"$out"
}

if [[ $CLIENT == kxdpgun || $CLIENT == gun ]]; then
  SRV_MAC=$(ip netns exec "$SRV" cat /sys/class/net/s0/address)
  ROWS=(${ROWS:-mep-xdp mep-xdp-nat mep-udp knot-xdp knot-udp})
  declare -A CAP CAP_C1 CAP_TOTAL CAP_AT PEAK PEAK_C1 PEAK_AT
  for row in "${ROWS[@]}"; do
    # kxdpgun leaves its program on the client veth; the native rows' peer needs it free.
    ip -n "$CLI" link set dev c0 xdp off 2>/dev/null || true
    PEER_PID=
    start "$row"
    pin_napi
    if [[ -n $PEER_PID ]]; then
      # The peer served the check above; kxdpgun brings its own program for the client veth.
      kill -TERM "$PEER_PID" 2>/dev/null || true
      wait "$PEER_PID" 2>/dev/null || true
      for _ in $(seq 50); do ip -n "$CLI" link show c0 | grep -q xdp || break; sleep 0.1; done
    fi
    for rate in $RATES; do
      read -r rps pct c1 total replies < <(gun "$rate")
      echo "$row at $rate q/s offered: $rps replies/s ($pct%), us/reply: CPU 1 $c1, total $total"
      if [[ $row == mep-xdp* ]]; then
        sleep 0.3
        answered=$(grep '^answered' "$WORK/$row.log" | tail -n 1 | awk '{ print $2 }')
        ((answered >= replies)) || { echo "$row: $answered kernel answers for $replies replies" >&2; exit 1; }
      fi
      if awk -v p="$pct" 'BEGIN { exit !(p >= 99) }' && ((rps > ${CAP[$row]:-0})); then
        CAP[$row]=$rps CAP_C1[$row]=$c1 CAP_TOTAL[$row]=$total CAP_AT[$row]=$rate
      fi
      if ((rps > ${PEAK[$row]:-0})); then
        PEAK[$row]=$rps PEAK_C1[$row]=$c1 PEAK_AT[$row]=$rate
      fi
    done
    stop_servers
  done
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
  {
    echo "Kernel DNS answers over a veth, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; $CLIENT on CPU 0,"
    echo "offered $RATES q/s for ${DURATION}s each; server side on CPU 1; 1,000 A names"
    echo
    printf '%-12s %11s %8s %10s %11s %11s %8s %10s\n' row "capacity/s" offered "cpu1 us/r" \
      "total us/r" "peak/s" offered "cpu1 us/r"
    for row in "${ROWS[@]}"; do
      printf '%-12s %11s %8s %10s %11s %11s %8s %10s\n' "$row" "${CAP[$row]:-0}" "${CAP_AT[$row]:--}" \
        "${CAP_C1[$row]:--}" "${CAP_TOTAL[$row]:--}" "${PEAK[$row]:-0}" "${PEAK_AT[$row]:--}" \
        "${PEAK_C1[$row]:--}"
    done
    echo
    printf '%-22s %10s %14s %10s %14s\n' ratio "capacity" "total CPU/r" "peak" "peak cpu1/r"
    for pair in mep-xdp:mep-udp mep-xdp-nat:mep-udp mep-xdp:knot-xdp mep-xdp-nat:knot-xdp mep-udp:knot-udp; do
      a=${pair%%:*} b=${pair##*:}
      [[ -n ${PEAK[$a]:-} && -n ${PEAK[$b]:-} ]] || continue
      printf '%-22s %10s %14s %10s %14s\n' "$a/$b" "$(ratio "${CAP[$a]:-0}" "${CAP[$b]:-0}")" \
        "$(ratio "${CAP_TOTAL[$a]:-0}" "${CAP_TOTAL[$b]:-0}")" "$(ratio "${PEAK[$a]}" "${PEAK[$b]}")" \
        "$(ratio "${PEAK_C1[$a]}" "${PEAK_C1[$b]}")"
    done
    echo
    echo "capacity: the most replies/s with >= 99% of the queries sent answered (a row that answers"
    echo "everything $CLIENT sends at the highest rate is limited by $CLIENT, not by itself); peak:"
    echo "the most replies/s at any offered rate, losses allowed, with CPU 1's time per reply there"
    echo "(the server side saturated: its cost per reply). CPU figures are /proc/stat ticks; all"
    echo "receive work is a NAPI thread's and counted."
    if [[ $CLIENT == gun ]]; then
      echo "total CPU includes CPU 0, which the generator keeps busy: compare cpu1."
    fi
  } | tee "$OUT_DIR/xdp-dns-veth-$CLIENT.txt"
  exit 0
fi

ROWS=(${ROWS:-mep-xdp mep-xdp-nat mep-udp knot-xdp knot-udp})
declare -A QPS LOST BAD C1 OTHER TOTAL
for round in $(seq "$ROUNDS"); do
  for row in "${ROWS[@]}"; do
    start "$row"
    pin_napi
    read -r qps lost bad c1 other total done < <(run "$row")
    if [[ $row == mep-xdp* ]]; then
      # Every answer must be the kernel's: nothing else listens on port 53 there.
      sleep 0.3
      answered=$(grep '^answered' "$WORK/$row.log" | tail -n 1 | awk '{ print $2 }')
      ((answered >= done)) || { echo "$row: $answered kernel answers for $done answered queries" >&2; exit 1; }
    fi
    stop_servers
    echo "round $round $row: $qps q/s, lost $lost, not NOERROR $bad, us/q: CPU 1 $c1, other $other, total $total"
    if [[ -z ${QPS[$row]:-} || $qps -gt ${QPS[$row]} ]]; then
      QPS[$row]=$qps C1[$row]=$c1 OTHER[$row]=$other TOTAL[$row]=$total
    fi
    LOST[$row]=$((${LOST[$row]:-0} + lost)) BAD[$row]=$((${BAD[$row]:-0} + bad))
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
{
  echo "Kernel DNS answers over a veth, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; dnsperf on CPU 0,"
  echo "$CLIENTS clients, best of $ROUNDS x ${DURATION}s; server side on CPU 1; 1,000 A names"
  echo
  printf '%-12s %10s %10s %11s %11s %7s %6s\n' row "queries/s" "cpu1 us/q" "other us/q" "total us/q" lost errors
  for row in "${ROWS[@]}"; do
    printf '%-12s %10s %10s %11s %11s %7s %6s\n' "$row" "${QPS[$row]}" "${C1[$row]}" "${OTHER[$row]}" \
      "${TOTAL[$row]}" "${LOST[$row]}" "${BAD[$row]}"
  done
  echo
  printf '%-22s %10s %14s\n' ratio "q/s" "total CPU/q"
  for pair in mep-xdp:mep-udp mep-xdp:knot-xdp mep-xdp:knot-udp mep-xdp-nat:knot-xdp mep-udp:knot-udp; do
    a=${pair%%:*} b=${pair##*:}
    [[ -n ${QPS[$a]:-} && -n ${QPS[$b]:-} ]] || continue
    printf '%-22s %10s %14s\n' "$a/$b" "$(ratio "${QPS[$a]}" "${QPS[$b]}")" "$(ratio "${TOTAL[$a]}" "${TOTAL[$b]}")"
  done
  echo
  echo "q/s is capped by dnsperf on its one core wherever the server is cheaper than the client;"
  echo "total CPU per query (client and server, all kernel work) is lower-is-better."
} | tee "$OUT_DIR/xdp-dns-veth.txt"
