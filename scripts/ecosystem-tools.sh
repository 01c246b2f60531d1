#!/usr/bin/env bash
# Installs the ecosystem's own tools that tests/tests/ecosystem.rs checks a live broker
# with, under DIR (default ${CARGO_TARGET_DIR:-target}/ecosystem), and nothing system-wide:
#   venv/     a python3 venv with py-spiffe (PyPI `spiffe`), schemathesis, the OIDC relying
#             parties PyJWT and jwcrypto, and what they need, at the versions pinned in
#             tests/ecosystem/requirements.txt; pip's downloads are cached in DIR/pip-cache
#   promtool  from Debian 12's `prometheus` package (apt-get download, extracted, not
#             installed)
# Reuses what is there while the pins are unchanged. Needs python3-venv and apt lists.
#
#   scripts/ecosystem-tools.sh [DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${CARGO_TARGET_DIR:-$root/target}/ecosystem}"
requirements="$root/tests/ecosystem/requirements.txt"
mkdir -p "$dir"

if ! cmp -s "$requirements" "$dir/venv/requirements.txt"; then
  echo "== python3 venv in $dir/venv ($(python3 --version))"
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check --cache-dir "$dir/pip-cache" \
    --only-binary :all: -r "$requirements"
  cp "$requirements" "$dir/venv/requirements.txt"
fi

if [ ! -x "$dir/promtool" ]; then
  echo "== promtool from Debian's prometheus package"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # Quiet: apt-get's output (a note that it fetched as root) shows only when it fails.
  if ! log=$(cd "$work" && apt-get download -q prometheus </dev/null 2>&1); then
    echo "$log" >&2
    echo "apt-get download prometheus failed (apt-get update first?)" >&2
    exit 1
  fi
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
  install -m 0755 "$work/usr/bin/promtool" "$dir/promtool"
fi
"$dir/promtool" --version | head -n 1
"$dir/venv/bin/python" -c 'import importlib.metadata as m; print(" ".join(f"{p} {m.version(p)}" for p in ("spiffe", "schemathesis", "PyJWT", "jwcrypto", "cryptography")))'
