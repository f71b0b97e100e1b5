#!/usr/bin/env bash
# The Debian package as an operator gets it: builds mep_<version>_amd64.deb from the binary
# `cargo test --all-features` built (every data plane), installs it, and checks what was
# installed: the binary answers --version, systemd-analyze verify accepts the unit, the user
# and the configuration's owner; then purges it. Needs root (CI is root) and cargo-deb
# (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-package: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root to install the package"
[[ -x target/debug/mep ]] || cargo build --locked --all-features --bin mep
rm -rf target/debian
# The dev profile: the binary the tests just built (cargo-deb warns that it prefers release).
cargo deb -p mep-api --no-build --profile dev --no-strip -o target/debian/ >/dev/null 2>&1 ||
    cargo deb -p mep-api --no-build --profile dev --no-strip -o target/debian/
deb=$(ls target/debian/mep_*_amd64.deb)
version=$(dpkg-deb -f "$deb" Version)
trap 'dpkg --purge mep >/dev/null 2>&1 || true' EXIT
dpkg --purge mep >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null
[[ $(/usr/bin/mep --version) == "mep ${version%-*}" ]] || fail "mep --version: $(/usr/bin/mep --version)"
systemd-analyze verify /usr/lib/systemd/system/mep.service || fail "systemd-analyze verify"
getent passwd mep >/dev/null || fail "no mep user"
[[ $(stat -c '%U:%G %a' /etc/mep/mep.toml) == "root:mep 640" ]] ||
    fail "/etc/mep/mep.toml is $(stat -c '%U:%G %a' /etc/mep/mep.toml)"
grep -q '^ProtectSystem=strict' /usr/lib/systemd/system/mep.service || fail "unit not hardened"
# The installed configuration starts mep (on free loopback ports and a scratch store).
scratch=$(mktemp -d)
log="$scratch/log"
/usr/bin/mep --log-format json serve --config /etc/mep/mep.toml --data-dir "$scratch" \
    --mp1-addr 127.0.0.1:0 --mm5-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    grep -q '"message":"mep is serving"' "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "mep did not start with /etc/mep/mep.toml"; }
    sleep 0.2
done
grep -q '"message":"mep is serving"' "$log" || { cat "$log" >&2; fail "mep did not start in 20 s"; }
kill -TERM "$pid"
wait "$pid" || fail "mep did not stop cleanly on SIGTERM"
rm -rf "$scratch"
echo "test-package: $deb installed, verified and removed"
