#!/usr/bin/env bash
# `mediflow submit` end to end (issue 13): a CSV of valid rows submitted to a local `handler`
# (standalone, embedded store, batches ingested in-process), timed by the CLI itself from reading
# the file to the last batch judged. Run through `scripts/bench.sh --cli` (see BENCHMARKS.md).
#   scripts/bench-cli.sh            release build, 100,000 rows, then the same file again (resume)
#   scripts/bench-cli.sh --smoke    dev build, 2,000 rows: proves the pipeline; judges no figure
set -euo pipefail
cd "$(dirname "$0")/.."
# --all-features like scripts/bench.sh, so both benchmarks share one release build of the handler.
rows=100000 profile=release build=(--release --all-features)
if [ "${1:-}" = "--smoke" ]; then rows=2000 profile=debug build=(--all-features); fi
cargo build "${build[@]}" -p handler -p mediflow-cli
mkdir -p target/bench
work=$(mktemp -d)
handler_pid=""
cleanup() { if [ -n "$handler_pid" ]; then kill "$handler_pid" 2>/dev/null || true; wait "$handler_pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

# 100,000 valid rows over 20 sites and a year of dates (about 120 bytes each).
awk -v n="$rows" 'BEGIN {
  print "site_id,trial_phase,submission_date,status,patient_count,notes";
  split("I II III IV", phase, " "); split("pending validated rejected", status, " ");
  for (i = 0; i < n; i++)
    printf "SITE%03d,%s,2025-%02d-%02d,%s,%d,bench row %d\n", i % 20, phase[i % 4 + 1], i % 12 + 1, i % 28 + 1, status[i % 3 + 1], i % 10000 + 1, i
}' >"$work/rows.csv"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MEDIFLOW_ADDR="127.0.0.1:$port" MEDIFLOW_DATA_DIR="$work/data" RUST_LOG=warn \
  "target/$profile/handler" >"$work/handler.log" 2>&1 &
handler_pid=$!
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  kill -0 "$handler_pid" 2>/dev/null || { cat "$work/handler.log"; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/ready" >/dev/null

submit() { "target/$profile/mediflow" submit --quiet --url "http://127.0.0.1:$port" "$work/rows.csv"; }
first=$(submit)
again=$(submit)
rate() { sed -n 's/^time: *\([0-9.]*\) s (\([0-9]*\) rows\/s)$/\1 s, \2 rows\/s/p' <<<"$1"; }
echo "$first"
echo "mediflow submit, $rows valid rows ($profile): first run $(rate "$first"); same file again (every batch already judged) $(rate "$again")" \
  | tee target/bench/cli.txt
