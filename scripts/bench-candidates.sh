#!/usr/bin/env bash
# The storage-engine candidates of ADR 0006, measured on this machine: CPU per durable, indexed
# record for a bare journal, redb, redb with non-durable commits and fjall (bench/candidates, its
# own crate outside the workspace; never part of the test command).
#   scripts/bench-candidates.sh [--prefill N] [--records N]   (defaults 100000 and 30000)
set -euo pipefail
cd "$(dirname "$0")/.."
prefill=100000
records=30000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefill) prefill="$2"; shift 2 ;;
    --records) records="$2"; shift 2 ;;
    *) echo "usage: scripts/bench-candidates.sh [--prefill N] [--records N]" >&2; exit 2 ;;
  esac
done
cargo build --release --locked --manifest-path bench/candidates/Cargo.toml --target-dir target/candidates >&2
bin=target/candidates/release/candidates
pin=()
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null && pin=(taskset -c 1)
for group in 32 128 1024; do
  for engine in journal redb redb-none fjall; do
    "${pin[@]}" "$bin" "$engine" --prefill "$prefill" --records "$records" --group "$group" --dir "${TMPDIR:-/tmp}"
  done
done
