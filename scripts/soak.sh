#!/usr/bin/env bash
# A bounded soak: mixed load against the standalone binary (auth on) for N seconds (default 60),
# then every acknowledged record and batch read back; fails on any unexpected answer (5xx,
# connection error, wrong status), on a lost or changed record, or on RSS growth after warm-up
# beyond the store file's growth plus max(5 MiB, 20%). The test is tests/integration/soak.rs
# (`soak_long`, ignored in the normal run; `soak_10_seconds` is in the test command).
# Usage: scripts/soak.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
case "$seconds" in
  ''|*[!0-9]*) echo "usage: scripts/soak.sh [seconds]" >&2; exit 2 ;;
esac
MEDIFLOW_SOAK_SECS="$seconds" cargo nextest run --all-features --test integration \
  --run-ignored only -E 'test(=soak::soak_long)' --no-capture
