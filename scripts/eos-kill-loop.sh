#!/usr/bin/env bash
# Runs the kill -9 fault test under exactly_once N times in a row (default 20) and prints the tally.
# Not a CI test: it takes about a minute a run. Each run starts its own local broker.
#   bash scripts/eos-kill-loop.sh [N] [pytest test id]
# The figures of each run (recommendations, repeated versions, aborted messages seen by a
# read_uncommitted reader, time to the first output after the restart) are in $OUT/run-K.log.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
test_id=${2:-"tests/integration/test_faults.py::test_worker_killed_mid_stream_and_restarted[exactly_once]"}
out=${OUT:-$(mktemp -d -t ripple-eos-loop.XXXX)}
mkdir -p "$out"
passed=0
for k in $(seq 1 "$runs"); do
  if .venv/bin/python -m pytest -q -s -p no:cacheprovider "$test_id" >"$out/run-$k.log" 2>&1; then
    passed=$((passed + 1)); verdict=pass
  else
    verdict=FAIL
  fi
  figures=$(grep -o '\[faults\] worker kill -9.*' "$out/run-$k.log" | head -1)
  echo "run $k/$runs: $verdict ${figures#\[faults\] }"
done
echo "$passed/$runs passed (logs in $out)"
[ "$passed" -eq "$runs" ]
