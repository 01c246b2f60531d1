#!/usr/bin/env bash
# Runs the whole test suite: builds the workspace binaries, then every test with
# cargo-nextest when it is installed (plus the doctests, which nextest does not run), else
# with cargo test. Extra arguments go to the test runner (e.g. a test name filter).
#
# The tests start real swtpm instances and drive them with tpm2-tools, real PostgreSQL
# servers (initdb on a temporary directory, as the postgres user when run as root), and real
# VMs (qemu + OVMF + swtpm booting Debian's kernel, fetched with apt-get download, with the
# release client inside). When the Debian packages they need are missing, this installs
# them if run as root, and otherwise prints the apt-get line and exits 2. Set CI=true to
# make a test that finds swtpm (or qemu, OVMF, the release client) missing fail instead of
# skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# package -> how to tell it is installed (a program, or a pkg-config module)
declare -A probe=(
  [pkg-config]=pkg-config
  [libtss2-dev]=pc:tss2-esys
  [swtpm]=swtpm
  [swtpm-tools]=swtpm_setup
  [tpm2-tools]=tpm2_getrandom
  [openssl]=openssl
  [tpm2-openssl]=file:/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so
  [postgresql]=pgbin:initdb
  # The real-VM test (tests/tests/real_vm.rs, tests/realvm/build.sh).
  [qemu-system-x86]=qemu-system-x86_64
  [ovmf]=file:/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
  [busybox-static]=dpkg:busybox-static
  [systemd-boot-efi]=file:/usr/lib/systemd/boot/efi/linuxx64.efi.stub
  [sbsigntool]=sbsign
  [mtools]=mcopy
  [dosfstools]=file:/usr/sbin/mkfs.vfat
  [fdisk]=file:/usr/sbin/sfdisk
  [cpio]=cpio
  [binutils]=objcopy
  [socat]=socat
  # The ecosystem test's python3 venv (scripts/ecosystem-tools.sh).
  [python3-venv]=dpkg:python3-venv
)
missing=()
for package in pkg-config libtss2-dev swtpm swtpm-tools tpm2-tools openssl tpm2-openssl postgresql \
  qemu-system-x86 ovmf busybox-static systemd-boot-efi sbsigntool mtools dosfstools fdisk cpio binutils socat \
  python3-venv; do
  check=${probe[$package]}
  if [[ $check == pc:* ]]; then
    command -v pkg-config >/dev/null && pkg-config --exists "${check#pc:}" && continue
  elif [[ $check == dpkg:* ]]; then
    # busybox-static: /bin/busybox alone may be Debian's dynamically linked busybox.
    dpkg-query -W -f '${Status}' "${check#dpkg:}" 2>/dev/null | grep -q 'ok installed' && continue
  elif [[ $check == file:* ]]; then
    compgen -G "${check#file:}" >/dev/null && continue
  elif [[ $check == pgbin:* ]]; then
    # Debian keeps the server programs off PATH, in /usr/lib/postgresql/<version>/bin.
    compgen -G "/usr/lib/postgresql/*/bin/${check#pgbin:}" >/dev/null && continue
    command -v "${check#pgbin:}" >/dev/null && continue
  else
    command -v "$check" >/dev/null && continue
  fi
  missing+=("$package")
done

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
install_or_explain "${missing[@]}"

echo "== cargo build --workspace --bins --locked"
cargo build --workspace --bins --locked

# The real-VM test runs the release client inside its VMs (target/release/mooring-client).
echo "== cargo build --release -p mooring-client --locked"
cargo build --release -p mooring-client --locked

# The fuzz targets live outside the workspace (cargo fuzz builds them); make sure they
# still compile against the parsers they exercise.
echo "== cargo check (fuzz targets)"
cargo check -q --manifest-path fuzz/Cargo.toml --locked --target-dir target/fuzz-check

# Whether this is a CI run (CI set, and not to false or 0).
in_ci() { [[ -n ${CI:-} && ${CI,,} != false && $CI != 0 ]]; }
# skipped WHAT WHY: a step that cannot run here is a failure in CI, else a note.
skipped() {
  if in_ci; then
    echo "FATAL: $1: $2" >&2
    exit 1
  fi
  echo "== $1 skipped: $2"
}

# The Debian packages: built with cargo-deb from the binaries built above (dev profile:
# see the script), installed with dpkg -i, the broker run from its installed
# configuration, purged. Not with a test filter.
if (($# == 0)); then
  if [ "$(id -u)" = 0 ] && cargo deb --version >/dev/null 2>&1; then
    echo "== scripts/package-check.sh dev"
    scripts/package-check.sh dev
  else
    skipped "package check" "it needs root and cargo-deb (cargo install cargo-deb --locked)"
  fi
fi

# The tools tests/tests/ecosystem.rs checks a live broker with (py-spiffe, schemathesis,
# promtool), under the target directory; kept between runs.
ecosystem="${CARGO_TARGET_DIR:-target}/ecosystem"
mkdir -p "$ecosystem"
MOORING_ECOSYSTEM="$(cd "$ecosystem" && pwd)"
export MOORING_ECOSYSTEM
echo "== scripts/ecosystem-tools.sh $MOORING_ECOSYSTEM"
if ! scripts/ecosystem-tools.sh "$MOORING_ECOSYSTEM"; then
  skipped "the ecosystem tools" "scripts/ecosystem-tools.sh failed (tests/tests/ecosystem.rs will skip)"
fi

if cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo nextest run --workspace --locked --no-fail-fast $*"
  cargo nextest run --workspace --locked --no-fail-fast "$@"
  if (($# == 0)); then
    echo "== cargo test --workspace --doc --locked"
    cargo test --workspace --doc --locked
  fi
else
  echo "== cargo test --workspace --locked $* (cargo-nextest not installed)"
  cargo test --workspace --locked "$@"
fi

# Fuzz smoke: every fuzz target for about 20 s from its seeds (scripts/fuzz-smoke.sh). Not
# with a test filter. Needs cargo-fuzz: skipped without it, a failure in CI.
if (($# == 0)); then
  if cargo fuzz --version >/dev/null 2>&1; then
    echo "== scripts/fuzz-smoke.sh"
    scripts/fuzz-smoke.sh
  else
    skipped "fuzz smoke" "cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
  fi
fi
