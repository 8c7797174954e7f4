#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each of them for a while.
#
#   scripts/fuzz.sh smoke            every target for FUZZ_SECONDS (default 10) s: `make fuzz-smoke`
#   scripts/fuzz.sh long             every target for FUZZ_SECONDS (default 600) s: `make fuzz`
#   scripts/fuzz.sh long TARGET...   only those targets
#
# Needs a nightly Rust toolchain that is already installed (libFuzzer and the
# sanitizers are nightly-only; FUZZ_TOOLCHAIN picks one, else the first nightly
# `rustup toolchain list` shows) and cargo-fuzz (installed from crates.io when
# missing). Seeds come from `poirot simulate` (fuzz/seed.py) into the
# git-ignored fuzz/corpus/<target>/, which libFuzzer grows from run to run.
# A crash stops the run with a non-zero exit; its input is in
# fuzz/artifacts/<target>/ (`cargo +nightly fuzz run TARGET FILE` replays it).
set -euo pipefail

cd "$(dirname "$0")/.."
mode=${1:-smoke}
shift || true
case $mode in
smoke) seconds=${FUZZ_SECONDS:-10} ;;
long) seconds=${FUZZ_SECONDS:-600} ;;
*)
    echo "usage: $0 smoke|long [TARGET...]" >&2
    exit 2
    ;;
esac
CARGO=${CARGO:-cargo}

toolchain=${FUZZ_TOOLCHAIN:-$(rustup toolchain list | awk '/^nightly/ { print $1; exit }')}
if [ -z "$toolchain" ]; then
    echo "fuzz: no nightly Rust toolchain is installed (cargo-fuzz needs one: rustup toolchain install nightly)" >&2
    exit 1
fi
if ! "$CARGO" "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    "$CARGO" install --locked cargo-fuzz --version '^0.13'
fi

# The seeds are written by the project's own simulator.
"$CARGO" build --quiet --bin poirot
poirot="${CARGO_TARGET_DIR:-target}/debug/poirot"
python3 fuzz/seed.py "$poirot" fuzz/corpus

# Release build with debug assertions (overflow checks) and AddressSanitizer, in its
# own target directory (FUZZ_TARGET_DIR): nothing in it can be shared with the main
# build (another toolchain, other flags), whatever CARGO_TARGET_DIR says.
fuzz=("$CARGO" "+$toolchain" fuzz)
flags=(--debug-assertions --target-dir "${FUZZ_TARGET_DIR:-fuzz/target}")
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi
built=$(date +%s)
if [ $# -gt 0 ]; then
    for t in "${targets[@]}"; do
        "${fuzz[@]}" build "${flags[@]}" "$t"
    done
else
    "${fuzz[@]}" build "${flags[@]}"
fi
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - built)) s with $toolchain"

mkdir -p fuzz/artifacts
started=$(date +%s)
for t in "${targets[@]}"; do
    log=fuzz/artifacts/$t.log
    # -timeout: one input taking over 10 s is a hang, and a failure.
    if "${fuzz[@]}" run "${flags[@]}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        # libFuzzer's last status line: runs, coverage (cov: edges, ft: features), corpus, exec/s.
        done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | tr -s '[:space:]' ' ' || true)
        echo "fuzz: $t ${seconds} s: ${done_line:-(no status line, see $log)}"
    else
        tail -n 60 "$log" >&2
        echo "fuzz: $t FAILED (whole output: $log; the input is in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets ran ${seconds} s each without a crash ($(($(date +%s) - started)) s)"
