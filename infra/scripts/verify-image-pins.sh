#!/usr/bin/env bash
# Resolves every image the build pins by digest (pipeline Test stage, which has network access):
# the Dockerfile's syntax frontend and base images (ARG defaults), and the pipeline's binfmt
# image. Each must exist at its digest; the standalone base must be a multi-platform index with
# linux/amd64 and linux/arm64 (the standalone image is built for both), the others must serve
# linux/amd64. Entries in .ci/checks/image-pins-pending.txt (no digest yet) get a warning with
# the tag's current digest, to be pinned by a reviewed change.
#
#   verify-image-pins.sh            (from the repository root; needs docker with buildx, jq)
set -euo pipefail

repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$repo"
failures=0

# platforms_of REF: the os/arch pairs an image reference serves, one per line.
platforms_of() {
  local raw
  raw="$(docker buildx imagetools inspect --raw "$1")" || return 1
  if jq -e '.manifests' >/dev/null <<<"$raw"; then
    jq -r '.manifests[] | select(.platform != null) | "\(.platform.os)/\(.platform.architecture)"' <<<"$raw"
  else
    # A single-platform manifest: the platform is in its config.
    docker buildx imagetools inspect "$1" --format '{{json .Image}}' | jq -r '"\(.os)/\(.architecture)"'
  fi
}

check() {
  local what="$1" ref="$2" needs="$3" have
  if [[ "$ref" != *@sha256:* ]]; then
    if grep -qE "^$what[[:space:]]" .ci/checks/image-pins-pending.txt; then
      echo "##vso[task.logissue type=warning]$what ($ref) is not pinned yet; its current digest: $(docker buildx imagetools inspect "$ref" --format '{{json .Manifest.Digest}}' 2>/dev/null || echo unknown)"
      return 0
    fi
    echo "##vso[task.logissue type=error]$what ($ref) has no digest"
    failures=$((failures + 1))
    return 0
  fi
  if ! have="$(platforms_of "$ref")"; then
    echo "##vso[task.logissue type=error]$what: $ref does not resolve"
    failures=$((failures + 1))
    return 0
  fi
  for platform in $needs; do
    if ! grep -qx "$platform" <<<"$have"; then
      echo "##vso[task.logissue type=error]$what: $ref has no $platform (has: $(tr '\n' ' ' <<<"$have"))"
      failures=$((failures + 1))
    fi
  done
  echo "ok $what $ref ($(tr '\n' ' ' <<<"$have"))"
}

arg() { sed -n "s/^ARG $1=//p" Dockerfile; }
check SYNTAX "$(sed -n '1s/^# syntax=//p' Dockerfile)" "linux/amd64"
check RUST_IMAGE "$(arg RUST_IMAGE)" "linux/amd64"
check STANDALONE_BASE "$(arg STANDALONE_BASE)" "linux/amd64 linux/arm64"
check FUNCTIONS_BASE "$(arg FUNCTIONS_BASE)" "linux/amd64"
check binfmtImage "$(grep -A1 'name: binfmtImage' azure-pipelines.yml | sed -n 's/^ *value: //p')" "linux/amd64"

[[ "$failures" -eq 0 ]] || { echo "$failures pinned image(s) failed" >&2; exit 1; }
