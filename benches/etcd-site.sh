#!/usr/bin/env bash
# mep as one platform on three nodes and a three-member etcd cluster, all on this machine:
#  - cross-node visibility: 1,000 changes at 100 writes/s, a service registered on node 1 until
#    node 3 discovers it, a DNS rule changed over Mm5 on node 2 until node 1's DNS answers it
#    (p50/p99, from the write's start);
#  - registration throughput on etcd (node 1, 3 members) next to redb (one node), same run, with
#    the CPU the servers used per registration (mep and etcd processes, from /proc);
#  - heartbeat throughput the same way: on etcd a heartbeat renews the service's lease (sent on
#    node 2 for services registered on node 1), on redb it is taken in memory.
# Usage: benches/etcd-site.sh [changes] [rate] [seconds] [clients]
set -euo pipefail
cd "$(dirname "$0")/.."
changes=${1:-1000} rate=${2:-100} seconds=${3:-10} clients=${4:-16}
command -v etcd >/dev/null || { echo "needs etcd (scripts/setup.sh installs etcd-server)" >&2; exit 1; }
cargo build --release --locked --features xdp,etcd --bin mep >&2
mep=target/release/mep
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cluster=m0=http://127.0.0.1:24380,m1=http://127.0.0.1:24381,m2=http://127.0.0.1:24382
endpoints=http://127.0.0.1:24370,http://127.0.0.1:24371,http://127.0.0.1:24372
for i in 0 1 2; do
    etcd --name m$i --data-dir "$work/m$i" \
        --listen-client-urls http://127.0.0.1:2437$i --advertise-client-urls http://127.0.0.1:2437$i \
        --listen-peer-urls http://127.0.0.1:2438$i --initial-advertise-peer-urls http://127.0.0.1:2438$i \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
        >"$work/etcd$i.log" 2>&1 &
    pids+=($!)
done
etcd_pids=("${pids[@]}")
until ETCDCTL_API=3 etcdctl --endpoints "$endpoints" put /probe 1 >/dev/null 2>&1; do sleep 0.2; done
head -c 32 /dev/urandom >"$work/master.key"

start_mep() { # name mp1 mm5 dns extra...
    local name=$1 mp1=$2 mm5=$3 dns=$4; shift 4
    "$mep" serve --insecure-http --no-auth --data-dir "$work/$name" --api-root http://mep.site.example:8080 \
        --mp1-addr 127.0.0.1:$mp1 --mm5-addr 127.0.0.1:$mm5 --dns-addr 127.0.0.1:$dns \
        --dns-upstream 127.0.0.1:9 --services-per-app 1000000 "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    until curl -sf "http://127.0.0.1:$mm5/ready" >/dev/null; do sleep 0.1; done
}
etcd_args=(--store etcd --etcd-endpoints "$endpoints" --master-key-file "$work/master.key")
start_mep n1 24301 24311 24321 "${etcd_args[@]}" --node-id n1
n1=${pids[-1]}
start_mep n2 24302 24312 24322 "${etcd_args[@]}" --node-id n2
n2=${pids[-1]}
start_mep n3 24303 24313 24323 "${etcd_args[@]}" --node-id n3
n3=${pids[-1]}
start_mep solo 24304 24314 24324
solo=${pids[-1]}
api=/mep/mec_service_mgmt/v1

python3 benches/etcd_site.py "http://127.0.0.1:24301$api" "http://127.0.0.1:24303$api" \
    http://127.0.0.1:24312 127.0.0.1:24321 "$changes" "$rate"

cpu() { # total utime+stime of the given pids (none: 0), in clock ticks
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo $t
}
hz=$(getconf CLK_TCK)
cat >"$work/register.lua" <<'LUA'
-- Registrations spread over 64 applications (changes of one application are serialized).
local n = 0
local body = '{"serName":"tp","version":"1","state":"ACTIVE","serializer":"JSON","transportInfo":' ..
  '{"id":"t","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"2.0",' ..
  '"endpoint":{"uris":["http://10.0.0.1/x"]},"security":{}}}'
request = function()
  n = n + 1
  return wrk.format("POST", "/mep/mec_service_mgmt/v1/applications/tp-" .. (n % 64) .. "/services",
    {["content-type"] = "application/json"}, body)
end
LUA
per_op() { awk -v t="$1" -v hz="$hz" -v n="$2" 'BEGIN{printf "%.0f", t / hz * 1e6 / n}'; }
measure() { # what label script url mep-pids... [-- etcd-pids...]
    local what=$1 label=$2 script=$3 url=$4; shift 4
    local meps=() etcds=() before_m before_e out after_m after_e n
    while [ $# -gt 0 ] && [ "$1" != -- ]; do meps+=("$1"); shift; done
    [ $# -gt 0 ] && shift && etcds=("$@")
    before_m=$(cpu "${meps[@]}") before_e=$(cpu "${etcds[@]}")
    out=$(wrk -t 2 -c "$clients" -d "${seconds}s" -s "$script" "$url")
    after_m=$(cpu "${meps[@]}") after_e=$(cpu "${etcds[@]}")
    if grep -q "Non-2xx" <<<"$out"; then echo "$label: failed ${what}s:" >&2; echo "$out" >&2; exit 1; fi
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "throughput $label: $(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out") ${what}s/s" \
        "($clients connections, $n in ${seconds} s, latency $(awk '/Latency/ {print $2 " avg, " $4 " max"}' <<<"$out"));" \
        "server CPU $(per_op $((after_m + after_e - before_m - before_e)) "$n") µs/$what" \
        "(mep $(per_op $((after_m - before_m)) "$n"), etcd $(per_op $((after_e - before_e)) "$n"))"
}
measure registration "etcd (node 1, 3 members, 3 nodes following)" "$work/register.lua" http://127.0.0.1:24301 \
    "$n1" "$n2" "$n3" -- "${etcd_pids[@]}"
measure registration "redb (one node)" "$work/register.lua" http://127.0.0.1:24304 "$solo"

heartbeats() { # name register-port -> a wrk script of heartbeats over 256 services with liveness
    local name=$1 port=$2 i id
    {
        echo "local ids = {"
        for i in $(seq 256); do
            id=$(curl -sf -X POST -H 'content-type: application/json' \
                "http://127.0.0.1:$port$api/applications/hb-$((i % 16))/services" \
                -d '{"serName":"hb","version":"1","state":"ACTIVE","serializer":"JSON","livenessInterval":60,"transportInfo":{"id":"t","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"2.0","endpoint":{"uris":["http://10.0.0.1/x"]},"security":{}}}' |
                python3 -c 'import json,sys; print(json.load(sys.stdin)["serInstanceId"])')
            echo "  {\"hb-$((i % 16))\", \"$id\"},"
        done
        echo "}"
        cat <<'LUA'
local n = 0
request = function()
  n = n + 1
  local s = ids[(n % #ids) + 1]
  return wrk.format("PATCH", "/mep/mec_service_mgmt/v1/applications/" .. s[1] .. "/services/" .. s[2] .. "/liveness",
    {["content-type"] = "application/json"}, '{"state":"ACTIVE"}')
end
LUA
    } >"$work/heartbeat-$name.lua"
}
heartbeats etcd 24301
heartbeats redb 24304
sleep 1
measure heartbeat "etcd (node 2, lease renewals, 3 members, 3 nodes)" "$work/heartbeat-etcd.lua" http://127.0.0.1:24302 \
    "$n1" "$n2" "$n3" -- "${etcd_pids[@]}"
measure heartbeat "redb (one node, in memory)" "$work/heartbeat-redb.lua" http://127.0.0.1:24304 "$solo"
