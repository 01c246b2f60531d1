#!/usr/bin/env bash
# Mooring demo: the broker on its embedded store; VM A (a real software TPM, address
# 127.0.0.2) attests with mooring-client and pays at the example payment service; then
# everything A keeps is copied onto VM B (another TPM, 127.0.0.3) and every use of the copy is
# refused, with the reason printed. Everything runs on loopback and is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(pkg-config libtss2-dev swtpm swtpm-tools tpm2-tools openssl)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# shellcheck source=scripts/packages.sh
. scripts/packages.sh
install_or_explain "${missing[@]}"

echo "== building the broker, the client, the payment service and the demo (first time: a few minutes)"
cargo build -q --workspace --bins --locked
exec "${CARGO_TARGET_DIR:-target}/debug/mooring-demo"
