#!/usr/bin/env bash
# Runs every test of the project on a fresh machine, installing what it needs:
#   the dependency policy, formatting and lints, unit and integration tests (real binary, real
#   sockets, the Cosmos emulator and Azurite), the arm64 build tested under emulation,
#   infrastructure and manifest checks, image builds (amd64 and arm64), API fuzzing and the
#   benchmark smoke run.
#
# Usage: scripts/test.sh           every test (CI runs exactly this through .ci/run)
#        scripts/test.sh --quick   day-to-day subset: policy, format, lints, unit and integration
#                                  tests without the soak, the long property cases and the
#                                  infrastructure/image/fuzz/benchmark stages (a few minutes warm)
#
# Needs: Rust (rustup) with cargo-nextest, Node 20+ with npm, Python 3.11+, root for apt-get (the
# image check installs buildah, the arm64 stage Debian's Rust, the aarch64 gcc and qemu, the
# benchmark smoke hyperfine and oha). Everything else is installed by the stages themselves; nothing is
# read from outside the repository but ../shared (schemas for the offline infrastructure checks).
# To prove it on an empty cache, run scripts/fresh-check.sh (README, "Contributing").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

started=$(date +%s)
stage_name=""
stage_start=$started
timings=()
step() {
  local now
  now=$(date +%s)
  [[ -n "$stage_name" ]] && timings+=("$(printf '%5ss  %s' "$(( now - stage_start ))" "$stage_name")")
  stage_name="$1"
  stage_start=$now
  printf '\n==> %s (%ss)\n' "$1" "$(( now - started ))"
}
summary() {
  local status=$? now
  now=$(date +%s)
  [[ -n "$stage_name" ]] && timings+=("$(printf '%5ss  %s' "$(( now - stage_start ))" "$stage_name")")
  printf '\n==> where the time went (total %ss, exit %s)\n' "$(( now - started ))" "$status"
  printf '%s\n' "${timings[@]}"
}
trap summary EXIT

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup.rs)"; exit 1; }
command -v node >/dev/null || { echo "node (20+) is required for the Cosmos emulator and Azurite"; exit 1; }
command -v python3 >/dev/null || { echo "python3 (3.11+) is required for the checks"; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
cargo --version
cargo nextest --version | head -n 1

step "fetch every locked dependency (all platforms; the dependency policy reads them all)"
cargo fetch --locked

step "dependency policy (deny.toml: licenses, bans, sources)"
bash .ci/checks/deny.sh

step "no merge-conflict markers in tracked files"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if git grep -nE '^(<<<<<<<|>>>>>>>) |^=======$' -- ':!*.lock'; then
    echo "merge-conflict markers above: resolve them"
    exit 1
  fi
fi

step "emulators (npm ci in tests/emulators)"
if [ ! -d tests/emulators/node_modules ] || [ tests/emulators/package-lock.json -nt tests/emulators/node_modules ]; then
  (cd tests/emulators && npm ci --no-audit --no-fund --loglevel=error)
fi

step "format and lints"
cargo fmt --all -- --check
# The house's layering (ADR 0011): no import cycle, no transport name below api.
scripts/module-graph.sh --check >/dev/null
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The production build: no `emulator` feature, so no Cosmos key path compiles in.
cargo clippy -p handler --bins --locked -- -D warnings

if [[ $quick == 1 ]]; then
  step "unit and integration tests (quick: no soak, 64 property cases)"
  PROPTEST_CASES="${PROPTEST_CASES:-64}" \
    cargo nextest run --workspace --all-features --locked --no-fail-fast -E 'not test(/soak/)'
  step "done (quick)"
  exit 0
fi

step "unit and integration tests"
cargo nextest run --workspace --all-features --locked --no-fail-fast

step "arm64: cross-build, then integration tests against the arm64 binary under qemu-system-aarch64"
arm64_binary="$(scripts/build-arm64.sh --features emulator)"
bash scripts/test-arm64.sh "$arm64_binary"

for check in .ci/checks/infra.sh .ci/checks/manifests.sh; do
  if [ -f "$check" ]; then
    step "$check"
    bash "$check"
  fi
done
if [ -f .ci/checks/images.sh ]; then
  step "images (buildah, final stages with the built binary)"
  bash .ci/checks/images.sh "$root/target/debug/handler" "$arm64_binary"
fi

step "API fuzzing (schemathesis against the running binary's own OpenAPI document)"
bash .ci/checks/api-fuzz.sh "$root/target/debug/handler"

# Installs what it lacks: Debian's hyperfine, and once a debug build of oha (scripts/bench-env.sh).
step "benchmark smoke run (proves the benchmark works and its counts add up; judges no figure)"
bash scripts/bench.sh --smoke

step "done"
