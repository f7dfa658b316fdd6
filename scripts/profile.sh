#!/usr/bin/env bash
# Profiles the service and the floors under the benchmark's load (issue 12: "profile before and
# after each change"), so that each missed target comes with where the CPU goes, per request.
#
# Each target runs pinned to CPU 1 with `loadgen load` on CPU 0 (32 connections: 2 s of warm-up
# POSTs, then a POST phase, then a GET phase):
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
# Build first: cargo build --release --all-features -p handler -p floor -p loadgen
# Output: target/profile/<target>.<phase>.{data,syscalls.txt} and target/profile/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(service floor durable-floor)
half=$(( seconds / 2 ))
out=target/profile
mkdir -p "$out"
command -v perf >/dev/null || { echo "perf is required (Debian: apt-get install linux-perf)"; exit 1; }
for bin in target/release/handler target/release/floor target/release/loadgen; do
  [ -x "$bin" ] || { echo "$bin is missing: build the release binaries first"; exit 1; }
done

scratch=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
key="profile-key-0123456789abcdef"
printf '%s\n' "$key" >"$scratch/keys"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # target port
  local target=$1 port=$2
  rm -rf "$scratch/data" && mkdir -p "$scratch/data"
  case "$target" in
    service|service@*)
      # service@PATH: another build of the handler (a before/after comparison in one run).
      local bin=target/release/handler
      [[ "$target" == service@* ]] && bin="${target#service@}"
      env -u RUST_LOG MEDIFLOW_ADDR="127.0.0.1:$port" MEDIFLOW_DATA_DIR="$scratch/data" \
        MEDIFLOW_API_KEYS_FILE="$scratch/keys" taskset -c 1 "$bin" >/dev/null 2>&1 &
      ;;
    floor) taskset -c 1 target/release/floor "127.0.0.1:$port" >/dev/null 2>&1 & ;;
    durable-floor) taskset -c 1 target/release/floor "127.0.0.1:$port" "$scratch/data/journal" >/dev/null 2>&1 & ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  server=$!
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
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
for target in "${targets[@]}"; do
  name=${target//[^A-Za-z0-9_-]/_}
  port=$(free_port)
  start "$target" "$port"
  taskset -c 0 target/release/loadgen load --addr "127.0.0.1:$port" --api-key "$key" \
    --connections 32 --warmup-ms "$warmup_ms" --duration-ms "$(( seconds * 1000 ))" \
    >"$out/$name.load.jsonl" &
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
