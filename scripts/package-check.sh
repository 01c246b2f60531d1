#!/usr/bin/env bash
# The Debian packages, built and installed on this machine: cargo-deb makes mooring-broker
# and mooring-client from the binaries of PROFILE already built (--no-build), `dpkg -i`
# installs them, then this checks what they set up (system users, configuration readable
# by the service's group only, units that pass systemd-analyze verify where installed),
# runs the broker from its installed configuration as its package's user (not through
# systemd, which a CI machine may not run), asks GET /v1/health, and purges both packages.
# Needs root and cargo-deb; refuses to touch an installation it did not make. `--fast`
# compression: these packages are only installed here (release ones: README "Install").
#
#   scripts/package-check.sh [PROFILE]    (default release: after
#                                          cargo build --release -p mooring-broker -p mooring-client)
#
# scripts/test.sh passes `dev`: the binaries its test build made. What this checks is the
# packaging (metadata, units, users, conffiles, maintainer scripts), the same for every
# profile, and a release build of the broker would cost CI minutes it does not have.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"

fail() {
  echo "package-check: FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "dpkg -i needs root"
for package in mooring-broker mooring-client; do
  if dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
    fail "$package is installed already; this check installs and purges its own"
  fi
done
out="${CARGO_TARGET_DIR:-target}/debian"
deb() { cargo deb -p "$1" --no-build --profile "$profile" --fast --quiet -o "$out" | tail -n 1; }
broker_deb=$(deb mooring-broker)
client_deb=$(deb mooring-client)
echo "built ($profile) $broker_deb ($(du -h "$broker_deb" | cut -f1)), $client_deb ($(du -h "$client_deb" | cut -f1))"

log=$(mktemp)
broker=""
cleanup() {
  if [ -n "$broker" ]; then
    kill "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
  fi
  rm -f "$log"
  dpkg --purge mooring-broker mooring-client >/dev/null 2>&1 || true
}
trap cleanup EXIT

dpkg -i "$broker_deb" "$client_deb" >/dev/null
echo "dpkg -i: $(dpkg-query -W -f '${Package} ${Version} ${Status}\n' mooring-broker mooring-client | tr '\n' ';')"

# What the packages set up.
getent passwd mooring-broker >/dev/null || fail "no system user mooring-broker"
getent passwd mooring-client >/dev/null || fail "no system user mooring-client"
if getent group tss >/dev/null; then
  id -nG mooring-client | tr ' ' '\n' | grep -qx tss || fail "mooring-client is not in group tss"
fi
for file in broker.toml:mooring-broker policy.toml:mooring-broker client.toml:mooring-client; do
  mode=$(stat -c '%U:%G %a' "/etc/mooring/${file%%:*}")
  [ "$mode" = "root:${file#*:} 640" ] || fail "/etc/mooring/${file%%:*} is $mode, not root:${file#*:} 640"
done
[ "$(stat -c '%U %a' /var/lib/mooring-broker)" = "mooring-broker 700" ] || fail "/var/lib/mooring-broker"
for unit in mooring-broker mooring-client; do
  complaint=$(systemd-analyze verify "/usr/lib/systemd/system/$unit.service" 2>&1) || fail "$unit.service: $complaint"
  [ -z "$complaint" ] || fail "$unit.service: $complaint"
done
echo "users, configuration modes, state directory and installed units: as intended"

# The configuration is the service's group's alone: another user cannot start from it (a
# broker that did start is stopped by the timeout, and fails the check).
status=0
timeout 10 runuser -u nobody -- /usr/bin/mooring-broker serve --config /etc/mooring/broker.toml >"$log" 2>&1 \
  || status=$?
if [ "$status" = 0 ] || [ "$status" = 124 ] || ! grep -qi "permission denied" "$log"; then
  fail "user nobody was not refused /etc/mooring/broker.toml (exit $status): $(cat "$log")"
fi

# The broker from its installed configuration, as its user: health answers.
runuser -u mooring-broker -- /usr/bin/mooring-broker serve --config /etc/mooring/broker.toml >"$log" 2>&1 &
broker=$!
for _ in $(seq 100); do
  grep -q "listening on https://" "$log" && break
  kill -0 "$broker" 2>/dev/null || fail "the installed broker exited: $(cat "$log")"
  sleep 0.2
done
grep -q "listening on https://127.0.0.1:8443" "$log" || fail "the installed broker is not listening: $(cat "$log")"
health=$(python3 - <<'PY'
import json, ssl, urllib.request
context = ssl.create_default_context(cafile="/var/lib/mooring-broker/tls/ca.pem")
with urllib.request.urlopen("https://127.0.0.1:8443/v1/health", context=context, timeout=10) as answer:
    body = json.load(answer)
    assert answer.status == 200 and body["status"] == "ok", body
    print(json.dumps(body))
PY
) || fail "GET /v1/health of the installed broker"
echo "installed broker, as user mooring-broker: GET /v1/health -> $health"
kill "$broker"
wait "$broker" 2>/dev/null || true
broker=""

dpkg --purge mooring-broker mooring-client >/dev/null
for gone in /usr/bin/mooring-broker /usr/bin/mooring-client /etc/mooring/broker.toml /etc/mooring/client.toml \
  /usr/lib/systemd/system/mooring-broker.service /var/lib/mooring-broker; do
  [ ! -e "$gone" ] || fail "$gone is left after dpkg --purge"
done
echo "dpkg --purge: both packages and their files gone"
