#!/usr/bin/env bash
# A quick A/B of the write path's tails: each build in turn, pinned to CPU 1 with the load on
# CPU 0 (as scripts/bench.sh), 32 connections: 2 s of warm-up POSTs, then POST saturated, POST at
# a fixed rate, GET saturated, GET at a fixed rate (oha, `--latency-correction` for the fixed
# rates), each for $SECONDS_PER_PHASE s; one line per phase: req/s, p50, p99, p99.9, then RSS.
# For a lever's before/after in minutes; the judged figures come from scripts/bench.sh.
#
# Usage: scripts/bench-paced.sh TARGET...   TARGET: service (this tree's release handler),
#        service@PATH (another handler binary), floor, durable-floor, store-floor
# Environment: POST_RATE (8000), GET_RATE (16000), SECONDS_PER_PHASE (8). Build first:
#        cargo build --release --all-features -p handler -p floor -p harness
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-env.sh
post_rate=${POST_RATE:-8000}
get_rate=${GET_RATE:-16000}
seconds=${SECONDS_PER_PHASE:-8}
oha=$(oha_path release)
scratch=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
load=(--no-tui --output-format json --worker-threads 1 -c 32 -z "${seconds}s" -H "x-api-key: $bench_key")
show() { # label phase report
  python3 - "$@" <<'PY'
import json, sys
label, phase, path = sys.argv[1:4]
report = json.load(open(path))
p = report["latencyPercentiles"]
codes = report["statusCodeDistribution"]
print(f"{label:<24} {phase:<11} {report['summary']['requestsPerSec']:>8.0f} req/s  "
      f"p50 {p['p50'] * 1e3:6.2f}  p99 {p['p99'] * 1e3:6.2f}  p99.9 {p['p99.9'] * 1e3:6.2f} ms  {codes}")
PY
}
for target in "$@"; do
  rm -f "$scratch/urls"
  start_target "$target" "$scratch"
  taskset -c 0 "$target_dir/release/harness" post --addr "$addr" --connections 32 \
    --duration-ms 2000 --urls "$scratch/urls" >/dev/null
  post=(-m POST -T application/json -d "$record_body" "http://$addr/records")
  taskset -c 0 "$oha" "${load[@]}" "${post[@]}" >"$scratch/r.json"
  show "$target" "POST sat" "$scratch/r.json"
  taskset -c 0 "$oha" "${load[@]}" -q "$post_rate" --latency-correction "${post[@]}" >"$scratch/r.json"
  show "$target" "POST@$post_rate" "$scratch/r.json"
  taskset -c 0 "$oha" "${load[@]}" --urls-from-file "$scratch/urls" >"$scratch/r.json"
  show "$target" "GET sat" "$scratch/r.json"
  taskset -c 0 "$oha" "${load[@]}" -q "$get_rate" --latency-correction --urls-from-file "$scratch/urls" >"$scratch/r.json"
  show "$target" "GET@$get_rate" "$scratch/r.json"
  echo "$target RSS after the load: $(awk '/VmRSS/ {print $2, $3}' "/proc/$server/status")"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
done
