#!/usr/bin/env bash
# Dependency policy (deny.toml at the repository root): licenses, bans, sources, offline.
#   licenses   every crate of the tree is under a licence deny.toml allows
#   bans       no OpenSSL/native-tls; duplicate versions of a crate are warnings
#   sources    crates.io only (no git, no other registry)
# Advisories are NOT checked: that needs the RustSec database from the network.
#
# Usage: bash .ci/checks/deny.sh     (installs cargo-deny with `cargo install --locked` if missing:
#                                     about 4-5 minutes on 2 cores, once per machine)
set -euo pipefail

repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$repo"
version="0.20.2"

if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $version"; then
  echo "installing cargo-deny $version (cargo install --locked; several minutes)"
  cargo install cargo-deny --locked --version "$version"
fi
cargo deny --offline --locked check --show-stats licenses bans sources
echo "PASS cargo deny (licenses, bans, sources; advisories not checked offline)"
