#!/usr/bin/env bash
# kcat (Debian 12: kcat 1.7.1 on librdkafka 2.0.2, an old client on purpose) against Courier.
#
#   tests/kcat/test_kcat.sh                  start a broker of its own (COURIER_BIN, default
#                                            target/debug/courier; 3 partitions per new topic)
#   tests/kcat/test_kcat.sh 127.0.0.1:9092   use a running broker; its topics must be
#                                            auto-created (any partition count works)
#
# Exits non-zero on any mismatch and prints what differed. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

# Known broker bugs, expected to fail (strict: when one passes, this script fails, so the marker
# gets removed together with the fix). Set a flag to 1 to mark a check as a known bug; none is
# known now. (ListOffsets v1-v3 responses once failed to encode; librdkafka 2.0.2 uses v2 for
# `-o beginning`, so the check below caught it.)
XFAIL_LISTOFFSETS_V1_V3=${XFAIL_LISTOFFSETS_V1_V3:-0}

command -v kcat >/dev/null || { echo "kcat is not installed (apt-get install kcat)" >&2; exit 2; }

work=$(mktemp -d)
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ $# -ge 1 ]; then
  bootstrap=$1
else
  bin=${COURIER_BIN:-target/debug/courier}
  [ -x "$bin" ] || { echo "broker binary $bin not found (cargo build -p courier-cli)" >&2; exit 2; }
  NO_COLOR=1 "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --num-partitions 3 \
    >"$work/broker.out" 2>"$work/broker.log" </dev/null &
  broker_pid=$!
  for _ in $(seq 100); do
    [ -s "$work/broker.out" ] && break
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
  done
  line=$(head -n1 "$work/broker.out" 2>/dev/null || true)
  if [[ ! "$line" =~ ^courier\ listening\ on\ (127\.0\.0\.1:[0-9]+)$ ]]; then
    echo "broker did not start (first stdout line: '$line')" >&2
    cat "$work/broker.log" >&2
    exit 1
  fi
  bootstrap=${BASH_REMATCH[1]}
fi
echo "kcat: $(kcat -V 2>&1 | grep -o 'Version [^ ]* ([^)]*librdkafka [0-9.]*' | head -1)"
echo "broker: $bootstrap"

passed=0 failed=0 xfailed=0
pass() { passed=$((passed + 1)); echo "PASS  $1"; }
fail() {
  failed=$((failed + 1)); echo "FAIL  $1"
  [ $# -lt 2 ] || printf '%s\n' "$2" | sed 's/^/      /' | head -n 60
}
# A check whose failure is a known broker bug: pass on failure, fail when it starts working.
expect_known_bug() { # name flag ok(0/1) detail
  if [ "$2" = 1 ]; then
    if [ "$3" = 0 ]; then
      xfailed=$((xfailed + 1)); echo "XFAIL $1 (known broker bug)"
    else
      failed=$((failed + 1))
      echo "FAIL  $1: XPASS, it works now: drop the known-bug marker in $0"
    fi
  elif [ "$3" = 0 ]; then fail "$1" "$4"
  else pass "$1"
  fi
}

kc() { timeout 30 kcat -b "$bootstrap" -X api.version.request=true "$@"; }

# Runs "$@"; returns its status, output in $work/out and $work/err.
run() { "$@" >"$work/out" 2>"$work/err"; }

# ---------------------------------------------------------------------------- metadata
if run kc -L && grep -q '^ 1 brokers:' "$work/out" && grep -q "broker [0-9]* at $bootstrap" "$work/out"; then
  pass "kcat -L lists the broker"
else
  fail "kcat -L lists the broker" "$(cat "$work/out" "$work/err")"
fi

# ---------------------------------------------------------------------------- produce/consume
# Input: keyed lines "key:value"; values may contain ':' (only the first splits), spaces, UTF-8.
make_input() { # count
  local i
  for i in $(seq 0 $(($1 - 1))); do
    printf 'key-%d:value %d: payload é€ %s\n' $((i % 7)) "$i" "$(printf '%*s' $((i % 40)) '' | tr ' ' x)"
  done
}

partitions_of() { # topic -> number of partitions in metadata
  kc -L -t "$1" 2>/dev/null | grep -c '^ *partition [0-9]*, leader'
}

# Compares consumer output ("partition|offset|key:value" lines) with the input lines:
# the same multiset, offsets 0.. contiguous per partition, one partition per key, and each
# partition's sequence equal to the input's subsequence for its keys. Prints what differs.
compare() { # input output
  python3 - "$1" "$2" <<'EOF'
import sys
from collections import defaultdict
inp = open(sys.argv[1], encoding="utf-8").read().splitlines()
rows = [l.split("|", 2) for l in open(sys.argv[2], encoding="utf-8").read().splitlines()]
errs = []
if any(len(r) != 3 for r in rows):
    errs.append("malformed output lines: %r" % [r for r in rows if len(r) != 3][:3])
rows = [r for r in rows if len(r) == 3]
got = [r[2] for r in rows]
if sorted(got) != sorted(inp):
    missing = sorted(set(inp) - set(got))[:5]
    extra = sorted(set(got) - set(inp))[:5]
    errs.append(f"content differs: sent {len(inp)} lines, got {len(got)}; "
                f"missing e.g. {missing}; unexpected e.g. {extra}")
by_part = defaultdict(list)
for p, o, m in rows:
    by_part[p].append((int(o), m))
key_parts = defaultdict(set)
for p, ms in by_part.items():
    offs = [o for o, _ in ms]
    if offs != list(range(len(ms))):
        errs.append(f"partition {p}: offsets not 0..{len(ms)-1} in order: {offs[:20]}")
    for _, m in ms:
        key_parts[m.split(":", 1)[0]].add(p)
for k, ps in key_parts.items():
    if len(ps) != 1:
        errs.append(f"key {k} is in several partitions: {sorted(ps)}")
for p, ms in by_part.items():
    keys = {m.split(":", 1)[0] for _, m in ms}
    want = [l for l in inp if l.split(":", 1)[0] in keys]
    if [m for _, m in ms] != want:
        errs.append(f"partition {p}: order differs from the order produced")
if errs:
    print("\n".join(errs))
    sys.exit(1)
EOF
}

# Consumes every partition of a topic from offset 0 to its end.
consume_from_zero() { # topic
  kc -C -e -q -t "$1" -o 0 -f '%p|%o|%k:%s\n'
}

make_input 200 >"$work/input.txt"
for variant in "acks=all" "acks=1" "acks=0" "compression=gzip" "compression=snappy" \
               "compression=lz4" "compression=zstd"; do
  topic="kcat-${variant//[=]/-}-$$-$RANDOM"
  case $variant in
    acks=*) opts=(-X "$variant") ;;
    compression=*) opts=(-X acks=all -z "${variant#compression=}") ;;
  esac
  name="produce -K: ${opts[*]} + consume -o 0"
  if ! run kc -P -K: -t "$topic" "${opts[@]}" <"$work/input.txt"; then
    fail "$name" "kcat -P failed: $(cat "$work/err")"; continue
  fi
  # acks=0 gets no answer: wait until all 200 are readable (bounded).
  for _ in $(seq 50); do
    consume_from_zero "$topic" >"$work/consumed.txt" 2>"$work/err" || true
    [ "$(wc -l <"$work/consumed.txt")" -ge 200 ] && break
    sleep 0.2
  done
  if diff_out=$(compare "$work/input.txt" "$work/consumed.txt"); then
    pass "$name ($(partitions_of "$topic") partitions)"
  else
    fail "$name" "$diff_out"$'\n'"$(head -c 2000 "$work/err")"
  fi
done

# The exact -f '%k:%s\n' format of the brief, on a single-partition read.
topic="kcat-format-$$-$RANDOM"
printf 'a:1\nb:two words\nc:x:y\n' >"$work/small.txt"
if run kc -P -K: -t "$topic" -p 0 -X acks=all <"$work/small.txt" &&
   kc -C -e -q -t "$topic" -p 0 -o 0 -f '%k:%s\n' >"$work/out" 2>"$work/err" &&
   cmp -s "$work/small.txt" "$work/out"; then
  pass "consume -f '%k:%s\\n' is byte-exact"
else
  fail "consume -f '%k:%s\\n' is byte-exact" "$(diff "$work/small.txt" "$work/out"; cat "$work/err")"
fi

# Headers and explicit partition.
topic="kcat-headers-$$-$RANDOM"
if printf 'hello\n' | run kc -P -t "$topic" -p 0 -H h1=v1 -H h2=v2 -X acks=all &&
   kc -C -e -q -t "$topic" -p 0 -o 0 -f '%h|%s\n' >"$work/out" 2>"$work/err" &&
   [ "$(cat "$work/out")" = "h1=v1,h2=v2|hello" ]; then
  pass "headers round trip"
else
  fail "headers round trip" "got: $(cat "$work/out") $(cat "$work/err")"
fi

# -o beginning asks ListOffsets for the earliest offset.
topic="kcat-beginning-$$-$RANDOM"
ok=0 diff_out=
if run kc -P -K: -t "$topic" -X acks=all <"$work/input.txt" &&
   kc -C -e -q -t "$topic" -o beginning -f '%p|%o|%k:%s\n' >"$work/consumed.txt" 2>"$work/err" &&
   diff_out=$(compare "$work/input.txt" "$work/consumed.txt"); then
  ok=1
else
  diff_out="${diff_out:-}"$'\n'"$(head -c 2000 "$work/err")"
fi
expect_known_bug "consume -o beginning (ListOffsets v2)" "$XFAIL_LISTOFFSETS_V1_V3" "$ok" "$diff_out"

# Metadata of a topic: one replica, the broker itself.
if run kc -L -t "$topic" && grep -qE '^ *partition 0, leader [0-9]+, replicas: [0-9]+, isrs: [0-9]+' "$work/out"; then
  pass "kcat -L -t shows partitions with leader/replicas/isrs"
else
  fail "kcat -L -t shows partitions with leader/replicas/isrs" "$(cat "$work/out" "$work/err")"
fi

if [ "$failed" -gt 0 ] && [ -f "$work/broker.log" ]; then
  echo "---- broker log: warnings and errors (last 40) ----"
  sed 's/\x1b\[[0-9;]*m//g' "$work/broker.log" | grep -E ' (WARN|ERROR) ' | tail -n 40 || true
  echo "---- broker log: last 20 lines ----"
  sed 's/\x1b\[[0-9;]*m//g' "$work/broker.log" | tail -n 20
fi
echo "kcat: $xfailed xfailed (known broker bugs, expected to fail)"
echo "kcat: $passed passed, $failed failed"
[ "$failed" = 0 ]
