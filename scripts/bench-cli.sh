#!/usr/bin/env bash
# `mediflow submit` end to end (issue 13): a CSV of valid rows submitted to a local `handler`
# (standalone, embedded store, batches ingested in-process), timed by hyperfine from the CLI's
# exec to its exit; then the same file again (every batch already judged: the resume path).
# Run through `scripts/bench.sh --cli` (see BENCHMARKS.md).
#   scripts/bench-cli.sh            release build, 100,000 rows once, then 3 resumes
#   scripts/bench-cli.sh --smoke    dev build, 2,000 rows: proves the pipeline; judges no figure
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-env.sh
# --all-features like scripts/bench.sh, so both benchmarks share one release build of the handler.
rows=100000 profile=release build=(--release --all-features) resumes=3
if [ "${1:-}" = "--smoke" ]; then rows=2000 profile=debug build=(--all-features) resumes=1; fi
need_hyperfine
cargo build "${build[@]}" -p handler -p mediflow-cli
mkdir -p "$target_dir/bench"
work=$(mktemp -d)
handler_pid=""
cleanup() { if [ -n "$handler_pid" ]; then kill "$handler_pid" 2>/dev/null || true; wait "$handler_pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

# Valid rows over 20 sites and a year of dates (about 60 bytes each).
awk -v n="$rows" 'BEGIN {
  print "site_id,trial_phase,submission_date,status,patient_count,notes";
  split("I II III IV", phase, " "); split("pending validated rejected", status, " ");
  for (i = 0; i < n; i++)
    printf "SITE%03d,%s,2025-%02d-%02d,%s,%d,bench row %d\n", i % 20, phase[i % 4 + 1], i % 12 + 1, i % 28 + 1, status[i % 3 + 1], i % 10000 + 1, i
}' >"$work/rows.csv"

# Port 0: the handler binds a port the kernel picks and names it in its JSON start-up line.
MEDIFLOW_ADDR=127.0.0.1:0 MEDIFLOW_DATA_DIR="$work/data" LOG_FORMAT=json RUST_LOG=warn \
  "$target_dir/$profile/handler" >"$work/handler.log" 2>&1 &
handler_pid=$!
url=""
for _ in $(seq 1 300); do
  addr=$(sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p' "$work/handler.log" | head -n 1)
  if [ -n "$addr" ] && curl -fsS "http://$addr/ready" >/dev/null 2>&1; then url="http://$addr"; break; fi
  kill -0 "$handler_pid" 2>/dev/null || { cat "$work/handler.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the handler was not ready within 30 s" >&2; exit 1; }

submit="$target_dir/$profile/mediflow submit --quiet --url $url $work/rows.csv"
time_it() { # name runs -> mean seconds
  hyperfine --shell=none --style basic --runs "$2" --export-json "$work/$1.json" -n "$1" "$submit" >&2
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$work/$1.json"
}
first=$(time_it first 1)
again=$(time_it again "$resumes")
rate() { python3 -c 'import sys; print(f"{float(sys.argv[1]):.2f} s, {int(sys.argv[2]) / float(sys.argv[1]):.0f} rows/s")' "$1" "$rows"; }
echo "mediflow submit, $rows valid rows ($profile, hyperfine): first run $(rate "$first"); same file again (every batch already judged, mean of $resumes) $(rate "$again")" \
  | tee "$target_dir/bench/cli.txt"
