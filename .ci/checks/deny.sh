#!/usr/bin/env bash
# Dependency policy (deny.toml at the repository root): licenses, bans, sources.
#   licenses   every crate of the shipped graph is under a licence deny.toml allows
#   bans       no OpenSSL/native-tls, no wildcard versions; duplicate versions are warnings
#   sources    crates.io only (no git, no other registry)
#
# Judged by .ci/checks/deps_policy.py from `cargo metadata --locked` (seconds), which reads the same
# deny.toml as cargo-deny. cargo-deny has no prebuilt binary in this project's registries and took
# 3.5 minutes to build on a fresh 2-core machine; where it is installed, or with
# MEDIFLOW_CARGO_DENY=1 (installs it), it runs too, and also checks advisories when the RustSec
# database is reachable (`cargo deny check advisories`, for a machine with network access).
#
# `cargo metadata` needs the manifests of every platform's dependencies (also those this machine
# never builds), so it runs online with --locked: the lock file pins every version, the registry
# only supplies what the lock file names.
#
# Usage: bash .ci/checks/deny.sh
set -euo pipefail

repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$repo"
fixtures=.ci/checks/fixtures/deps-policy

# Self-test: a graph with a copyleft crate, an AND that needs MPL, a crate without a licence, a git
# source, a denied crate and two wildcards must give exactly the expected findings (the check can fail).
got="$(python3 .ci/checks/deps_policy.py --metadata "$fixtures/metadata.json" | grep '^FAIL' || true)"
if [[ "$got" != "$(cat "$fixtures/expected-findings.txt")" ]]; then
  echo "FAIL deps_policy.py self-test: findings differ from $fixtures/expected-findings.txt:" >&2
  diff <(echo "$got") "$fixtures/expected-findings.txt" >&2 || true
  exit 1
fi
echo "PASS deps_policy.py self-test ($(wc -l <"$fixtures/expected-findings.txt") expected findings)"

python3 .ci/checks/deps_policy.py

if [[ "${MEDIFLOW_CARGO_DENY:-0}" == 1 ]] && ! command -v cargo-deny >/dev/null; then
  cargo install cargo-deny --locked --version 0.20.2
fi
if command -v cargo-deny >/dev/null; then
  cargo deny --locked check --show-stats licenses bans sources
  echo "PASS cargo deny (licenses, bans, sources)"
  if [[ "${MEDIFLOW_CARGO_DENY:-0}" == 1 ]]; then
    cargo deny --locked check advisories
    echo "PASS cargo deny advisories"
  fi
fi
