#!/usr/bin/env bash
# Mooring demo: a VM's TPM (swtpm) quotes its boot measurements, the verifier accepts the
# quote, and every tampered or replayed copy is refused with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

need=(swtpm swtpm_setup tpm2_quote)
missing=()
for tool in "${need[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing swtpm and tpm2-tools"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      pkg-config libtss2-dev swtpm swtpm-tools tpm2-tools >/dev/null
  else
    echo "missing ${missing[*]}: run  sudo apt-get install pkg-config libtss2-dev swtpm swtpm-tools tpm2-tools" >&2
    exit 2
  fi
fi

echo "== building mooring-broker"
cargo build -q -p mooring-broker --bin mooring-broker
broker="$PWD/target/debug/mooring-broker"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A tcti
# start_vm NAME KEY: a fresh software TPM for one simulated VM, on loopback ports; its TCTI
# goes to tcti[KEY]. (Not run in a subshell, so cleanup sees the swtpm pid.)
start_vm() {
  local name=$1 key=$2 port
  mkdir -p "$work/$name"
  while :; do
    port=$(free_port)
    swtpm socket --tpm2 --tpmstate dir="$work/$name" \
      --server type=tcp,port="$port",bindaddr=127.0.0.1 \
      --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
      --flags not-need-init,startup-clear >"$work/$name.log" 2>&1 &
    pids+=($!)
    sleep 0.3
    kill -0 "${pids[-1]}" 2>/dev/null && break
  done
  tcti[$key]="swtpm:host=127.0.0.1,port=$port"
}

tpm() { local vm=$1; shift; TPM2TOOLS_TCTI=${tcti[$vm]} TSS2_LOG=all+none "$@"; }

start_vm vm-a a
start_vm vm-b b

echo "== VM A boots: its TPM makes an EK and an attestation key (AK)"
for vm in a b; do
  tpm "$vm" tpm2_createek -c "$work/ek-$vm.ctx" -G rsa -u "$work/ek-$vm.pub" >/dev/null
  tpm "$vm" tpm2_createak -C "$work/ek-$vm.ctx" -c "$work/ak-$vm.ctx" -G rsa -g sha256 -s rsassa \
    -u "$work/ak-$vm.pub" -n "$work/ak-$vm.name" >/dev/null
  tpm "$vm" tpm2_flushcontext -t
  tpm "$vm" tpm2_pcrextend "4:sha256=$(printf 'kernel' | sha256sum | cut -d' ' -f1)"
done

nonce=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "== the verifier sends a fresh nonce: ${nonce:0:16}..."
tpm a tpm2_quote -c "$work/ak-a.ctx" -l sha256:0,1,2,3,4,5,6,7 -q "$nonce" \
  -m "$work/quote.msg" -s "$work/quote.sig" -o "$work/quote.pcrs" -F values >/dev/null

verify() {
  local label=$1; shift
  printf '\n-- %s\n' "$label"
  if "$broker" verify tpm-quote "$@" >"$work/out.json" 2>"$work/err.txt"; then
    echo "ACCEPTED"; grep -E '"(ak_name|qualifying_data|selection)"' "$work/out.json" | sed 's/^ */   /'
  else
    echo "REFUSED (exit $?): $(cat "$work/err.txt")"
  fi
}

args=(--ak "$work/ak-a.pub" --quote "$work/quote.msg" --signature "$work/quote.sig" --pcrs "$work/quote.pcrs")
verify "VM A's quote, with the nonce the verifier issued" "${args[@]}" --nonce "$nonce"
verify "the same quote replayed against a later challenge" "${args[@]}" --nonce "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

cp "$work/quote.pcrs" "$work/forged.pcrs"
# -F values: the eight SHA-256 values back to back; PCR 4 (the boot loader / kernel) starts at 128.
printf '\x42' | dd of="$work/forged.pcrs" bs=1 seek=128 conv=notrunc 2>/dev/null
verify "the quote with one PCR value rewritten (a different kernel claiming to be the good one)" \
  --ak "$work/ak-a.pub" --quote "$work/quote.msg" --signature "$work/quote.sig" --pcrs "$work/forged.pcrs" --nonce "$nonce"

verify "VM A's quote presented with VM B's attestation key" \
  --ak "$work/ak-b.pub" --quote "$work/quote.msg" --signature "$work/quote.sig" --pcrs "$work/quote.pcrs" --nonce "$nonce"

echo
echo "== done: one genuine quote accepted, three forgeries refused with their reason"
