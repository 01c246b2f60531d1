#!/usr/bin/env bash
# Fuzz smoke: builds every fuzz target once (release, debug assertions and overflow checks
# on, AddressSanitizer), then runs each for FUZZ_SECONDS (default 20) from its seeds: the
# synthetic ones in fuzz/seeds/<target>/ and those fuzz/seeds.sh makes from the shared test
# vectors. Fails on the first crash, timeout or out-of-memory, and names the input, which
# libFuzzer keeps in fuzz/artifacts/<target>/ (reproduce:
# fuzz/target/x86_64-unknown-linux-gnu/release/<target> <input>).
#
#   scripts/fuzz-smoke.sh [TARGET...]
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked); works on the stable toolchain
# through RUSTC_BOOTSTRAP=1. Long runs: the same command with -max_total_time=900.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${FUZZ_SECONDS:-20}

# Largest input per target: a little above the largest real vector of its kind.
declare -A max_len=(
  [api_json]=65536 [jwt_svid]=16384 [possession]=8192 [policy_file]=65536
  [eventlog]=1048576 [x509_bundle]=524288 [pcr_file]=16384 [snp_cert_table]=16384
  [tpm_public]=4096 [tpm_attest]=4096 [tpm_signature]=4096 [snp_report]=4096 [azure_hcl]=8192
)

echo "== cargo fuzz build -O -a"
start=$(date +%s)
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a)
echo "built in $(($(date +%s) - start)) s"

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  len=${max_len[$target]:?"scripts/fuzz-smoke.sh: no max_len for fuzz target $target"}
  seeds=("$work/$target-seeds")
  fuzz/seeds.sh "$target" "$work/$target-seeds"
  [ -d "fuzz/seeds/$target" ] && seeds+=("fuzz/seeds/$target")
  mkdir -p "$work/$target-corpus" "fuzz/artifacts/$target"
  echo "== fuzz $target (${seconds} s)"
  if ! "fuzz/target/x86_64-unknown-linux-gnu/release/$target" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -max_len="$len" -timeout=10 -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/$target/" \
    "$work/$target-corpus" "${seeds[@]}" >"$work/$target.log" 2>&1; then
    tail -n 60 "$work/$target.log" >&2
    echo "FAIL: fuzz target $target found an input that crashes, hangs or exhausts memory:" >&2
    ls -l "fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$work/$target.log" | tr '\n' ' '
  echo
done
echo "fuzz smoke: ${#targets[@]} targets, $(($(date +%s) - start)) s in all"
