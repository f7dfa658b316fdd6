#!/usr/bin/env bash
# Profiles the service and the floors under the benchmark's load (issue 12: "profile before and
# after each change"), so that each missed target comes with where the CPU goes, per request.
#
# Each target runs pinned to CPU 1 with `harness load` on CPU 0 (32 connections: 2 s of warm-up
# POSTs, then oha's POST phase, then its GET phase):
#   service         the release handler, standalone, embedded store, auth on, default log level
#   floor           bench/floor: the bare HTTP stack (GET and POST, nothing stored)
#   durable-floor   bench/floor with a journal: POST appended + fdatasync per group
# During each phase: `perf record -e cpu-clock -g` for the first half, `perf trace -s` (syscalls
# per thread) for the second. Then scripts/perf-categories.py turns the samples into CPU µs per
# request, by thread and by component (HTTP stack, kernel network, store, tracing, metrics, ...).
#
# Usage: scripts/profile.sh [seconds-per-phase] [targets...]   (default: 10 service floor durable-floor)
#        a target service@PATH runs another handler binary (e.g. a copy of the build before a change)
# Needs: perf (Debian: linux-perf), root or perf_event_paranoid <= 1, python3.
# Build first: cargo build --release --all-features -p handler -p floor -p harness (oha is
# installed when missing, as for scripts/bench.sh).
# Output: $target_dir/profile/<target>.<phase>.{data,syscalls.txt} and $target_dir/profile/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-env.sh
seconds="${1:-10}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(service floor durable-floor)
half=$(( seconds / 2 ))
out="$target_dir/profile"
mkdir -p "$out"
command -v perf >/dev/null || { echo "perf is required (Debian: apt-get install linux-perf)"; exit 1; }
oha=$(oha_path release)
for bin in "$target_dir"/release/{handler,floor,harness}; do
  [ -x "$bin" ] || { echo "$bin is missing: build the release binaries first"; exit 1; }
done

scratch=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
# The key `harness load` sends (bench/harness/src/servers.rs, API_KEY).
key="bench-key-0123456789"
printf '%s\n' "$key" >"$scratch/keys"

# Starts a target on port 0 and sets $server (its pid) and $addr (the address its start-up line names).
start() { # target
  local target=$1
  rm -rf "$scratch/data" && mkdir -p "$scratch/data"
  case "$target" in
    service|service@*)
      # service@PATH: another build of the handler (a before/after comparison in one run).
      local bin="$target_dir/release/handler"
      [[ "$target" == service@* ]] && bin="${target#service@}"
      env -u RUST_LOG GLIBC_TUNABLES="$image_malloc_tunables" MEDIFLOW_ADDR=127.0.0.1:0 MEDIFLOW_DATA_DIR="$scratch/data" LOG_FORMAT=json \
        MEDIFLOW_API_KEYS_FILE="$scratch/keys" taskset -c 1 "$bin" >"$scratch/out" 2>&1 &
      ;;
    floor) taskset -c 1 "$target_dir/release/floor" 127.0.0.1:0 >"$scratch/out" 2>&1 & ;;
    durable-floor) taskset -c 1 "$target_dir/release/floor" 127.0.0.1:0 "$scratch/data/journal" >"$scratch/out" 2>&1 & ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  server=$!
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p' "$scratch/out" | head -n 1)
    [ -n "$addr" ] && curl -fsS "http://$addr/health" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "$target did not answer /health" >&2
  exit 1
}

sample() { # target phase
  perf record -q -e cpu-clock -F 2999 -g -p "$server" -o "$out/$1.$2.data" -- sleep "$half" 2>/dev/null
  perf trace -s -p "$server" -o "$out/$1.$2.syscalls.txt" -- sleep "$(( half - 1 ))" 2>/dev/null || true
}

warmup_ms=2000
# What every POST sends (bench/harness/src/client.rs, RECORD_BODY).
body='{"site_id":"site001","trial_phase":"II","submission_date":"2025-03-15","status":"pending","patient_count":42,"notes":"Initial submission"}'
for target in "${targets[@]}"; do
  name=${target//[^A-Za-z0-9_-]/_}
  start "$target"
  # The warm-up's ids (harness post), then oha's POST and GET phases, all on CPU 0.
  (
    load=(--no-tui --output-format json --worker-threads 1 -c 32 -z "${seconds}s" -H "x-api-key: $key")
    taskset -c 0 "$target_dir/release/harness" post --addr "$addr" --connections 32 \
      --duration-ms "$warmup_ms" --urls "$scratch/urls" >/dev/null
    taskset -c 0 "$oha" "${load[@]}" -m POST -T application/json -d "$body" "http://$addr/records" \
      >"$out/$name.post.oha.json"
    taskset -c 0 "$oha" "${load[@]}" --urls-from-file "$scratch/urls" >"$out/$name.get.oha.json"
  ) &
  load=$!
  sleep "$(( warmup_ms / 1000 ))"
  sample "$name" post
  sleep 1
  sample "$name" get
  wait "$load"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
done

names=()
for target in "${targets[@]}"; do names+=("${target//[^A-Za-z0-9_-]/_}"); done
python3 scripts/perf-categories.py "$out" "$half" "${names[@]}" | tee "$out/summary.md"
