#!/usr/bin/env bash
# The benchmark: the service against the floors, in one run (BENCHMARKS.md). bench/harness
# orchestrates; oha drives the HTTP load, hyperfine times the starts, criterion the in-process
# figures (installed when missing: scripts/bench-env.sh).
#   scripts/bench.sh               release build, full run (~8 minutes after it), report on stdout and in
#                                  $target_dir/bench/results.md
#   scripts/bench.sh --smoke       dev build, a few seconds of load: proves the pipeline works and
#                                  that the counts add up; judges no figure (the test command's stage)
#   scripts/bench.sh --cli [--smoke]   `mediflow submit` end to end (scripts/bench-cli.sh)
# Extra arguments go to `harness run` (e.g. --connections 64 --duration-ms 20000 --no-pin, or
# --handler PATH to measure another build of the service against the floors of its own run).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--cli" ]; then shift; exec scripts/bench-cli.sh "$@"; fi
source scripts/bench-env.sh
mkdir -p "$target_dir/bench"
need_hyperfine
# --all-features: the Azurite phase uses the emulator-only connection-string path of the queue
# client (and the test command's other dev builds use the same features, so they are reused).
packages=(--all-features -p handler -p floor -p harness)
if [ "${1:-}" = "--smoke" ]; then
  shift
  # A release oha when one is installed (a full run was made here), else the cheaper debug build.
  oha="$target_dir/tools/release/bin/oha"
  [ -x "$oha" ] || oha=$(oha_path debug)
  cargo build "${packages[@]}"
  bench=$(bench_executable test --no-run --all-features -p harness --bench in_process)
  exec "$target_dir/debug/harness" run --smoke --oha "$oha" --in-process-bench "$bench" \
    --out "$target_dir/bench/smoke.md" "$@"
fi
oha=$(oha_path release)
cargo build --release "${packages[@]}"
bench=$(bench_executable bench --no-run --all-features -p harness --bench in_process)
exec "$target_dir/release/harness" run --oha "$oha" --in-process-bench "$bench" \
  --out "$target_dir/bench/results.md" "$@"
