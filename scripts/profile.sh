#!/usr/bin/env bash
# Profiles the service and the floors under the benchmark's load (issue 12: "profile before and
# after each change"), so that each missed target comes with where the CPU goes, per request.
#
# Each target runs pinned to CPU 1 with `harness load` on CPU 0 (32 connections: 2 s of warm-up
# POSTs, then oha's POST phase, then its GET phase):
#   service         the release handler, standalone, embedded store, auth on, default log level
#   floor           bench/floor: the bare HTTP stack (GET and POST, nothing stored)
#   durable-floor   bench/floor with a journal: POST appended + fdatasync per group
#   store-floor     harness store-floor: the HTTP stack in front of the service's embedded store (its audit events too)
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
sample() { # target phase
  perf record -q -e cpu-clock -F 2999 -g -p "$server" -o "$out/$1.$2.data" -- sleep "$half" 2>/dev/null
  perf trace -s -p "$server" -o "$out/$1.$2.syscalls.txt" -- sleep "$(( half - 1 ))" 2>/dev/null || true
}

warmup_ms=2000
for target in "${targets[@]}"; do
  name=${target//[^A-Za-z0-9_-]/_}
  start_target "$target" "$scratch"
  # The warm-up's ids (harness post), then oha's POST and GET phases, all on CPU 0.
  (
    load=(--no-tui --output-format json --worker-threads 1 -c 32 -z "${seconds}s" -H "x-api-key: $bench_key")
    taskset -c 0 "$target_dir/release/harness" post --addr "$addr" --connections 32 \
      --duration-ms "$warmup_ms" --urls "$scratch/urls" >/dev/null
    taskset -c 0 "$oha" "${load[@]}" -m POST -T application/json -d "$record_body" "http://$addr/records" \
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
