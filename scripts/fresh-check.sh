#!/usr/bin/env bash
# Proves the test command on an empty cache, as CI and a new contributor run it: a fresh clone of
# the committed work (uncommitted changes are NOT included) with a read-only copy of ../shared
# beside it, an empty CARGO_HOME (no registry, no cached crates, no cargo-installed tools; the
# rustup toolchain and cargo-nextest stay on PATH), empty npm and pip caches, no target/, no
# node_modules/, no .tools/; then `CI=true bash .ci/run` with no standard input.
#
# Usage: scripts/fresh-check.sh [REF]      REF defaults to HEAD
#        KEEP=1 scripts/fresh-check.sh     keeps the scratch folder (otherwise removed on success)
# Prints the elapsed time and the test command's own "where the time went" table.
#
# What it cannot empty: Debian packages installed earlier on this machine (buildah, qemu, ...) stay
# installed; the scripts install each one when it is missing, which only a new machine proves.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
ref=${1:-HEAD}
commit=$(git rev-parse --verify "$ref^{commit}")
[[ -d ../shared ]] || { echo "fresh-check: ../shared is missing beside the repository" >&2; exit 1; }
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
  echo "fresh-check: note: uncommitted changes are not part of the check (it clones $commit)"
fi

scratch=$(mktemp -d /tmp/mediflow-fresh.XXXXXX)
git clone --quiet --no-local "$repo" "$scratch/main"
git -C "$scratch/main" checkout --quiet --detach "$commit"
cp -a ../shared "$scratch/shared"
chmod -R a-w "$scratch/shared"
mkdir -p "$scratch/cargo-home" "$scratch/npm-cache" "$scratch/pip-cache" "$scratch/xdg-cache"

echo "fresh-check: $commit in $scratch/main (log: $scratch/run.log)"
start=$(date +%s)
set +e
(
  cd "$scratch/main"
  env CI=true \
    CARGO_HOME="$scratch/cargo-home" \
    npm_config_cache="$scratch/npm-cache" \
    PIP_CACHE_DIR="$scratch/pip-cache" \
    XDG_CACHE_HOME="$scratch/xdg-cache" \
    bash .ci/run </dev/null
) >"$scratch/run.log" 2>&1
status=$?
set -e
elapsed=$(( $(date +%s) - start ))

sed -n '/==> where the time went/,$p' "$scratch/run.log"
printf 'fresh-check: %s at %s: exit %s after %dm%02ds\n' "$ref" "$commit" "$status" $(( elapsed / 60 )) $(( elapsed % 60 ))
if [[ $status != 0 ]]; then
  tail -n 60 "$scratch/run.log"
  echo "fresh-check: FAILED; the whole log and the clone are kept in $scratch"
  exit "$status"
fi
if [[ "${KEEP:-0}" == 1 ]]; then
  echo "fresh-check: kept $scratch"
else
  chmod -R u+w "$scratch/shared"
  rm -rf "$scratch"
fi
