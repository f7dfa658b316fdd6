#!/usr/bin/env bash
# A quick A/B of the write path's tails: each build in turn, pinned to CPU 1 with the load on
# CPU 0 (as scripts/bench.sh), 32 connections: 2 s of warm-up POSTs, then POST saturated, POST at
# a fixed rate, GET saturated, GET at a fixed rate (oha, `--latency-correction` for the fixed
# rates), each for $SECONDS_PER_PHASE s; one line per phase: req/s, p50, p99, p99.9, then RSS.
# For a lever's before/after in minutes; the judged figures come from scripts/bench.sh.
#
# Usage: scripts/bench-paced.sh TARGET...   TARGET: service (this tree's release handler),
#        service@PATH (another handler binary), floor, durable-floor
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
key="bench-key-0123456789" # bench/harness/src/servers.rs, API_KEY
printf '%s\n' "$key" >"$scratch/keys"
body='{"site_id":"site001","trial_phase":"II","submission_date":"2025-03-15","status":"pending","patient_count":42,"notes":"Initial submission"}'
load=(--no-tui --output-format json --worker-threads 1 -c 32 -z "${seconds}s" -H "x-api-key: $key")
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
  rm -rf "$scratch/data" "$scratch/urls" && mkdir -p "$scratch/data"
  case "$target" in
    service|service@*)
      bin="$target_dir/release/handler"
      [[ "$target" == service@* ]] && bin="${target#service@}"
      env -u RUST_LOG GLIBC_TUNABLES="$image_malloc_tunables" MEDIFLOW_ADDR=127.0.0.1:0 MEDIFLOW_DATA_DIR="$scratch/data" LOG_FORMAT=json \
        MEDIFLOW_API_KEYS_FILE="$scratch/keys" taskset -c 1 "$bin" >"$scratch/out" 2>&1 &
      ;;
    floor) taskset -c 1 "$target_dir/release/floor" 127.0.0.1:0 >"$scratch/out" 2>&1 & ;;
    durable-floor) taskset -c 1 "$target_dir/release/floor" 127.0.0.1:0 "$scratch/data/journal" >"$scratch/out" 2>&1 & ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  server=$!
  addr=""
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p' "$scratch/out" | head -n 1)
    [ -n "$addr" ] && curl -fsS "http://$addr/health" >/dev/null 2>&1 && break
    sleep 0.05
  done
  [ -n "$addr" ] || { echo "$target did not start" >&2; exit 1; }
  taskset -c 0 "$target_dir/release/harness" post --addr "$addr" --connections 32 \
    --duration-ms 2000 --urls "$scratch/urls" >/dev/null
  post=(-m POST -T application/json -d "$body" "http://$addr/records")
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
