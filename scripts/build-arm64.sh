#!/usr/bin/env bash
# Cross-builds the real `handler` for linux/arm64 (aarch64-unknown-linux-gnu) from this workspace and
# its Cargo.lock, and prints the binary's path on stdout (everything else goes to stderr).
#
#   scripts/build-arm64.sh [--profile NAME] [--features LIST]
#     NAME defaults to arm64-test (see Cargo.toml); LIST is passed to cargo (the test command builds
#     with `emulator`, as its native tests do, so the queue tests can reach Azurite by key)
#
# Installs what it needs from Debian on a fresh machine (idempotent; needs root the first time):
# rustc-web/cargo-web (Debian's Rust, which ships the aarch64 standard library as the multiarch
# package libstd-rust-web-dev:arm64, so no rustup download is needed) and the aarch64 cross gcc for
# linking and for crates with C code (aws-lc-sys). Debian's toolchain lives in /usr/bin beside the
# rustup one; this script names /usr/bin/cargo and /usr/bin/rustc explicitly.
#
# Linker settings are the ones the Dockerfile's compile stage writes for TARGETARCH=arm64:
# CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER, CC_ and AR_aarch64_unknown_linux_gnu set to
# aarch64-linux-gnu-{gcc,ar}. docs/adr/0009-arm64-cross-build-and-emulation.md says how the two relate.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=arm64-test
features=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --features) features=(--features "$2"); shift 2 ;;
    *) echo "usage: scripts/build-arm64.sh [--profile NAME] [--features LIST]" >&2; exit 2 ;;
  esac
done

readonly TRIPLE=aarch64-unknown-linux-gnu
readonly CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc
log() { echo "build-arm64: $*" >&2; }

# has_packages PKG...: every package is installed (dpkg status "install ok installed").
has_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || return 1
  done
}

packages=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
if ! has_packages "${packages[@]}"; then
  [[ "$(id -u)" == 0 ]] || { log "missing Debian packages; run as root once: ${packages[*]}"; exit 1; }
  log "installing ${packages[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  # Other jobs on the machine may hold the dpkg lock: wait for it rather than fail.
  apt=(apt-get -o DPkg::Lock::Timeout=900 -qq)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >&2
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${packages[@]}" >&2
fi
[[ -x "$CARGO" && -x "$RUSTC" ]] || { log "$CARGO or $RUSTC missing after install"; exit 1; }

log "$("$RUSTC" --version) building handler for $TRIPLE (profile $profile${features[1]:+, features ${features[1]}})"
export RUSTC
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# Debian's cargo must not pick up rustup's proxies through PATH for rustdoc or build scripts.
export RUSTDOC=/usr/bin/rustdoc
"$CARGO" build --locked --package handler --bin handler --target "$TRIPLE" --profile "$profile" \
  "${features[@]}" >&2

binary="$PWD/target/$TRIPLE/$profile/handler"
[[ -x "$binary" ]] || { log "no binary at $binary"; exit 1; }
readelf -h "$binary" | grep -q 'Machine:.*AArch64' || { log "$binary is not an AArch64 ELF"; exit 1; }
echo "$binary"
