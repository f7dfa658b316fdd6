#!/usr/bin/env bash
# The benchmark (issue 7): the service against a bare axum floor, in one run. See BENCHMARKS.md.
#   scripts/bench.sh                 release build, full run (~6 minutes), report on stdout and in
#                                    target/bench/results.md
#   scripts/bench.sh --smoke         dev build, a few seconds of load: proves the pipeline and the
#                                    output work; judges no figure (what CI runs)
# Extra arguments go to `loadgen bench` (e.g. --connections 64 --duration-ms 20000 --no-pin, or
# --handler PATH to measure another build of the service against the floors of its own run).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
# --- issue 13: `mediflow submit` end to end, its own script (scripts/bench-cli.sh) ---
#   scripts/bench.sh --cli [--smoke]
if [ "${1:-}" = "--cli" ]; then shift; exec scripts/bench-cli.sh "$@"; fi
# --- end issue 13 ---
if [ "${1:-}" = "--smoke" ]; then
  shift
  # The same features as the workspace's other dev builds, so the shared target dir is reused.
  cargo build --all-features -p handler -p floor -p loadgen
  exec target/debug/loadgen bench --smoke --out target/bench/smoke.md "$@"
fi
# --all-features: the Azurite phase uses the emulator-only connection-string path of the queue client.
cargo build --release --all-features -p handler -p floor -p loadgen
exec target/release/loadgen bench --out target/bench/results.md "$@"
