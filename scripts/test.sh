#!/usr/bin/env bash
# Runs every test Courier has, installing what it needs on a fresh machine first.
#   ./scripts/test.sh            everything
#   SKIP_LINT=1 ./scripts/test.sh   skip fmt and clippy
#   SKIP_CLIENTS=1 ./scripts/test.sh   skip the client-compatibility tests (tests/python, tests/kcat)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# A from-scratch run gains nothing from incremental compilation, whose caches doubled the size
# of target/ (a CI machine ran out of disk); set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
[ "${SKIP_LINT:-}" = 1 ] || cargo fmt --all -- --check

step "cargo clippy"
[ "${SKIP_LINT:-}" = 1 ] || cargo clippy --workspace --all-targets -- -D warnings

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The toolkit's store tests (crates/courier-toolkit/tests/store_*.rs) start their own
# PostgreSQL server on loopback: they need the server binaries (initdb, pg_ctl), which Debian
# keeps in /usr/lib/postgresql/<version>/bin, and the postgres OS user the package creates.
step "install PostgreSQL (for the toolkit's store tests)"
if { command -v initdb && command -v pg_ctl; } >/dev/null 2>&1 ||
   ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "PostgreSQL server binaries present"
else
  echo "apt-get install postgresql"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postgresql >/dev/null
fi

step "cargo test"
cargo_log=$(mktemp)
cargo test --workspace 2>&1 | tee "$cargo_log"
cargo_sum() { grep -oE "test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed" "$cargo_log" |
  grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
cargo_passed=$(cargo_sum passed)
cargo_failed=$(cargo_sum failed)
echo "cargo test: $cargo_passed passed, $cargo_failed failed"

# ---------------------------------------------------------------------------- client tests
# Real Kafka clients against the real broker binary: confluent-kafka and kafka-python
# (tests/python, in the .venv virtualenv) and kcat on Debian's old librdkafka (tests/kcat).
if [ "${SKIP_CLIENTS:-}" = 1 ]; then
  echo; echo "SKIP_CLIENTS=1: client tests skipped"
  echo "$cargo_passed passed, $cargo_failed failed"
  exit 0
fi

step "install client-test tools (kcat, .venv)"
apt_pkgs=()
command -v kcat >/dev/null || apt_pkgs+=(kcat)
command -v python3 >/dev/null || apt_pkgs+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_pkgs+=(python3-venv)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "apt-get install ${apt_pkgs[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_pkgs[@]}" >/dev/null
fi
# Reinstall the venv only when the requirements (or the Python behind it) change.
req=tests/python/requirements.txt
stamp=.venv/.requirements.stamp
want="$(sha256sum "$req" | cut -d' ' -f1) $(python3 --version 2>&1)"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c '' 2>/dev/null ||
   [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "creating .venv from $req"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi
echo "kcat $(kcat -V 2>&1 | grep -o 'Version [0-9.]*.*librdkafka [0-9.]*' | sed 's/ (.*librdkafka/, librdkafka/')"
.venv/bin/python -c 'from importlib.metadata import version as v; import confluent_kafka as c
print("confluent-kafka", v("confluent-kafka"), "(librdkafka", c.libversion()[0] + "), kafka-python", v("kafka-python"))'

step "cargo build -p courier-cli (the broker the clients talk to)"
cargo build -q -p courier-cli
export COURIER_BIN="$root/target/debug/courier"

clients_log=$(mktemp)
trap 'rm -f "$clients_log" "$cargo_log"' EXIT

step "pytest tests/python"
t0=$SECONDS
py_rc=0
.venv/bin/python -m pytest tests/python -q 2>&1 | tee -a "$clients_log" || py_rc=$?
py_secs=$((SECONDS - t0))

step "tests/kcat/test_kcat.sh"
t0=$SECONDS
kcat_rc=0
tests/kcat/test_kcat.sh 2>&1 | tee -a "$clients_log" || kcat_rc=$?
kcat_secs=$((SECONDS - t0))

# Totals from pytest's closing line and the kcat script's "kcat: N passed, N failed".
count() { # word -> sum of "N word" over the closing lines
  { grep -E '^(=+ )?[0-9]+ (passed|failed|error|xfailed|skipped)|^kcat: [0-9]+ (passed|xfailed)' "$clients_log" |
      grep -oE "[0-9]+ $1" || true; } | awk '{s += $1} END {print s + 0}'
}
passed=$(count passed)
failed=$(( $(count failed) + $(count error) ))
# A runner that died before its closing line still counts as a failure.
[ "$py_rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1
[ "$kcat_rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1

step "summary"
echo "pytest: exit $py_rc in ${py_secs}s; kcat: exit $kcat_rc in ${kcat_secs}s; $(count xfailed) checks xfailed on known broker bugs"
echo "clients: $passed passed, $failed failed"
echo "$((cargo_passed + passed)) passed, $((cargo_failed + failed)) failed"
[ "$py_rc" = 0 ] && [ "$kcat_rc" = 0 ]
