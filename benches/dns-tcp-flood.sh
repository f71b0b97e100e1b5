#!/usr/bin/env bash
# DNS over TCP under an idle-connection flood: mep's listener (a connection table with per-client
# shares and idle limits) against hickory-server's (a per-connection timeout, 10 s here, and no
# connection limit), the reason mep serves its stream transports itself. Each server in turn
# runs with a 4,096-descriptor limit and 1,000 names; a flooder opens RATE connections/s from
# many loopback addresses and sends nothing, while a well-behaved client on 127.0.0.1 asks one
# question over a new TCP connection every 0.2 s. Prints, per server, the well-behaved client's
# answered/asked and its slowest answer, and the descriptors the server held after 15 s.
# Usage: benches/dns-tcp-flood.sh   (tunable: RATE=500 SECONDS_=20 LIMIT=4096)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RATE=${RATE:-500}
SECONDS_=${SECONDS_:-20}
LIMIT=${LIMIT:-4096}
cargo build --release -p mep-dns --example serve_rules --example hickory_baseline
WORK=$(mktemp -d -t mep-dns-flood.XXXXXX)
SERVER=
cleanup() {
  [[ -n $SERVER ]] && kill -9 "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/flood.py" <<'PY'
import resource, socket, struct, sys, threading, time
port, rate, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
stop = time.time() + secs
held, failed = [], [0]
def flood():
    i = 0
    while time.time() < stop:
        started = time.time()
        for _ in range(rate // 20):
            s = socket.socket(); s.settimeout(0.5)
            try:
                s.bind((f"127.0.{1 + (i // 250) % 200}.{2 + i % 250}", 0))
                s.connect(("127.0.0.1", port)); held.append(s)
            except OSError:
                failed[0] += 1; s.close()
            i += 1
        time.sleep(max(0, 0.05 - (time.time() - started)))
query = bytes.fromhex("123401000001000000000000") + b"\x05host7\x05bench\x03mep\x00\x00\x01\x00\x01"
def ask():
    started = time.time()
    s = socket.socket(); s.settimeout(2)
    try:
        s.bind(("127.0.0.1", 0)); s.connect(("127.0.0.1", port))
        s.sendall(struct.pack("!H", len(query)) + query)
        want = struct.unpack("!H", s.recv(2))[0]
        got = b""
        while len(got) < want:
            chunk = s.recv(want - len(got))
            if not chunk:
                return None
            got += chunk
        return time.time() - started
    except OSError:
        return None
    finally:
        s.close()
flooder = threading.Thread(target=flood); flooder.start()
time.sleep(1)
times, asked = [], 0
while time.time() < stop:
    asked += 1
    t = ask()
    if t is not None:
        times.append(t)
    time.sleep(0.2)
flooder.join()
print(len(times), asked, f"{max(times) * 1000:.0f}" if times else "-", len(held), failed[0])
PY

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
printf '%-8s %10s %18s %14s %18s\n' server answered "slowest answer" "fds at 15 s" "flood connections"
for server in mep hickory; do
  port=$(free_port)
  case $server in
    mep) cmd=(target/release/examples/serve_rules "127.0.0.1:$port" 1000 bench.mep 127.0.0.1:9 2) ;;
    hickory) cmd=(target/release/examples/hickory_baseline "127.0.0.1:$port" 1000 bench.mep 2) ;;
  esac
  prlimit --nofile="$LIMIT:$LIMIT" -- "${cmd[@]}" >"$WORK/$server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 50); do
    [[ $(dig +short +tcp +time=1 +tries=1 -p "$port" @127.0.0.1 host7.bench.mep A 2>/dev/null) == 198.18.0.7 ]] && break
    sleep 0.1
  done
  (sleep 15; ls "/proc/$SERVER/fd" 2>/dev/null | wc -l >"$WORK/$server.fds") &
  counter=$!
  read -r answered asked slowest opened failed < <(python3 "$WORK/flood.py" "$port" "$RATE" "$SECONDS_")
  wait "$counter"
  printf '%-8s %10s %15s ms %14s %18s\n' "$server" "$answered/$asked" "$slowest" "$(cat "$WORK/$server.fds")" \
    "$opened opened, $failed failed"
  kill -9 "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=
done
echo "A $RATE connections/s idle flood for ${SECONDS_} s, each server at a $LIMIT-descriptor limit."
