#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a short while (default 30 s each) with AddressSanitizer.
#
#   scripts/fuzz-smoke.sh [SECONDS]
#
# Env: FUZZ_TARGETS (space-separated, default: all three), FUZZ_SANITIZER (address | none;
# default address). Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the
# -Zsanitizer flag cargo-fuzz passes. Exits non-zero if a target finds a crash (the reproducer
# is left in fuzz/artifacts/<target>/). Not part of CI. See fuzz/README.md.
set -euo pipefail

secs="${1:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed; skipping the fuzz smoke run."
    echo "Install it with:  cargo install cargo-fuzz --locked"
    echo "(a C++ compiler is needed to build libFuzzer; no nightly toolchain is needed, see fuzz/README.md)"
    exit 0
fi

sanitizer="${FUZZ_SANITIZER:-address}"
targets="${FUZZ_TARGETS:-decode_request validate_batches log_roundtrip producer_snapshot}"
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi

# Starting corpora (fuzz/corpus is gitignored): valid frames and batches from kafka-protocol's
# encoders. Regenerated only when missing; the fuzzer adds to them.
for t in $targets; do
    if [ ! -d "corpus/$t" ] || [ -z "$(ls -A "corpus/$t" 2>/dev/null)" ]; then
        cargo run --quiet -p courier-fuzz-seedgen -- corpus
        break
    fi
done

cargo fuzz build -s "$sanitizer"
failed=""
# Inputs that once crashed a target must keep passing.
for dir in regressions/*/; do
    t=$(basename "$dir")
    echo "=== replaying $dir ==="
    cargo fuzz run -s "$sanitizer" "$t" "$dir"* -- -malloc_limit_mb=512 -rss_limit_mb=4096 || failed="$failed $t(regression)"
done
for t in $targets; do
    echo "=== fuzzing $t for ${secs}s (sanitizer: $sanitizer) ==="
    extra=()
    # Batches are at most max.message.bytes (1 MiB): decoding one must not need 512 MiB.
    [ "$t" = log_roundtrip ] && extra=(-malloc_limit_mb=512)
    if ! cargo fuzz run -s "$sanitizer" "$t" -- \
        -max_total_time="$secs" -rss_limit_mb=4096 "${extra[@]}" -print_final_stats=1; then
        failed="$failed $t"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz smoke: crash or error in:$failed (reproducers in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: no crash in ${secs}s per target"
