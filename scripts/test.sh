#!/usr/bin/env bash
# Runs every test Courier has, installing what it needs on a fresh machine first.
#   ./scripts/test.sh            everything
#   SKIP_LINT=1 ./scripts/test.sh   skip fmt and clippy
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
[ "${SKIP_LINT:-}" = 1 ] || cargo fmt --all -- --check

step "cargo clippy"
[ "${SKIP_LINT:-}" = 1 ] || cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace
