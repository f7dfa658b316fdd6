#!/usr/bin/env bash
# Runs every test of the project on a fresh machine, installing what it needs:
#   formatting and lints, unit and integration tests (real binary, real sockets, the Cosmos
#   emulator and Azurite), infrastructure and manifest checks, image builds, the benchmark smoke
#   run and the API fuzzing smoke run.
# Usage: scripts/test.sh            (from anywhere; CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (rustup.rs)"; exit 1; }
command -v node >/dev/null || { echo "node (20+) is required for the Cosmos emulator and Azurite"; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

step "emulators (npm ci in tests/emulators)"
if [ ! -d tests/emulators/node_modules ] || [ tests/emulators/package-lock.json -nt tests/emulators/node_modules ]; then
  (cd tests/emulators && npm ci --no-audit --no-fund --loglevel=error)
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The production build: no `emulator` feature, so no Cosmos key path compiles in.
cargo clippy -p handler --bins -- -D warnings

step "unit and integration tests"
MEDIFLOW_REQUIRE_EMULATORS=1 cargo nextest run --workspace --all-features --no-fail-fast

step "arm64: cross-build, then integration tests against the arm64 binary under qemu-system-aarch64"
arm64_binary="$(scripts/build-arm64.sh)"
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

step "dependency policy (cargo deny: licenses, bans, sources)"
bash .ci/checks/deny.sh

step "benchmark smoke run (proves the benchmark works; judges no figure)"
bash scripts/bench.sh --smoke

step "done"
