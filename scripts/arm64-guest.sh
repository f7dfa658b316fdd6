#!/usr/bin/env bash
# Runs the arm64 `handler` inside an emulated arm64 machine (qemu-system-aarch64, full-system:
# qemu-user hangs at the first pthread_create on this Debian, see docs/adr/0009), so the real
# integration tests can drive it over real sockets exactly as they drive the native binary.
#
#   scripts/arm64-guest.sh prepare BINARY   builds the guest (Debian arm64 kernel, busybox, the
#                                           binary and the libraries it links) under
#                                           target/arm64-guest/ and prints the path of a launcher
#   <launcher> [ARGS]                       what the tests start instead of the binary
#                                           (MEDIFLOW_TEST_BINARY=<launcher>, tests/integration/support)
#
# The launcher takes the environment the tests give the binary and boots one guest with it:
# - every listening address (MEDIFLOW_ADDR, MEDIFLOW_METRICS_ADDR, FUNCTIONS_CUSTOMHANDLER_PORT) is
#   forwarded from the same host address (a free one for port 0) into the guest, and the
#   handler's "listening" log line is rewritten to the host address, so a test sees one process on
#   127.0.0.1 as usual;
# - 127.0.0.1 in any other value (Azurite, Cosmos endpoints) becomes 10.0.2.2, the host as qemu's
#   user-mode network gateway shows it to the guest (the packets never leave the qemu process);
# - a value naming an existing host file (MEDIFLOW_API_KEYS_FILE) gets a copy of that file at the
#   same path in the guest, taken at boot (later changes on the host are not seen);
# - MEDIFLOW_DATA_DIR lives on a virtio-blk ext4 disk image, MEDIFLOW_DATA_DIR/guest-disk.img on the
#   host, which outlives the guest: a restart with the same folder boots with the same disk.
# The launcher execs qemu, so the process the test holds IS the machine: `kill -9` is a hard stop of
# the guest (no flush, no unmount); what the handler fsynced has reached the disk image.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$PATH:/usr/sbin:/sbin"
state="${MEDIFLOW_ARM64_GUEST_DIR:-$repo/target/arm64-guest}"
# Downloaded Debian packages, shared by every guest folder.
debs="$repo/target/arm64-guest-debs"
log() { echo "arm64-guest: $*" >&2; }
die() { log "$*"; exit 1; }

# --- prepare ------------------------------------------------------------------------------------

# modules_closure MODULES_DIR NAME...: the module files (relative to MODULES_DIR) for NAME and
# everything they depend on, dependencies first, each once; built-in modules print nothing. The
# dependencies come from each module's own `depends=` field (the package ships no modules.dep,
# and depmod is not needed for that).
modules_closure() {
  python3 - "$@" <<'PY'
import lzma, os, re, sys
modules_dir, wanted = sys.argv[1], sys.argv[2:]
norm = lambda name: name.replace("-", "_")
files = {}
for top, _, names in os.walk(os.path.join(modules_dir, "kernel")):
    for name in names:
        if ".ko" in name:
            files[norm(name.split(".ko")[0])] = os.path.relpath(os.path.join(top, name), modules_dir)
builtin = {norm(os.path.basename(line.strip()).split(".ko")[0])
           for line in open(os.path.join(modules_dir, "modules.builtin"))}
def depends(path):
    data = open(os.path.join(modules_dir, path), "rb").read()
    if path.endswith(".xz"):
        data = lzma.decompress(data)
    found = re.search(rb"\0depends=([^\0]*)\0", data)
    return [d for d in found.group(1).decode().split(",") if d] if found else []
order = []
def visit(name):
    name = norm(name)
    if name in builtin or files.get(name) in order:
        return
    if name not in files:
        sys.exit(f"module {name} is neither a module nor built in")
    for dep in depends(files[name]):
        visit(dep)
    order.append(files[name])
for name in wanted:
    visit(name)
print("\n".join(order))
PY
}

# Pulls the arm64 kernel and busybox from the Debian archive (cached in $debs).
fetch_guest_packages() {
  local kernel_pkg
  command -v qemu-system-aarch64 >/dev/null && command -v cpio >/dev/null && command -v mkfs.ext4 >/dev/null \
    || {
      [[ "$(id -u)" == 0 ]] || die "qemu-system-arm, cpio and e2fsprogs are needed (apt-get install, as root)"
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -qq update >&2
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -qq install -y \
        --no-install-recommends qemu-system-arm cpio e2fsprogs >&2
    }
  dpkg --print-foreign-architectures | grep -qx arm64 \
    || die "dpkg has no arm64 architecture (scripts/build-arm64.sh adds it)"
  # The kernel the archive carries now: the dependency of the linux-image-arm64 metapackage.
  kernel_pkg="$(apt-cache depends linux-image-arm64:arm64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*-arm64\)\(:arm64\)\?$/\1/p' | head -n1)"
  [[ -n "$kernel_pkg" ]] || die "cannot resolve linux-image-arm64:arm64's kernel package (apt-get update?)"
  mkdir -p "$debs"
  if ! compgen -G "$debs/${kernel_pkg}_*_arm64.deb" >/dev/null \
    || ! compgen -G "$debs/busybox-static_*_arm64.deb" >/dev/null; then
    log "downloading $kernel_pkg:arm64 and busybox-static:arm64"
    # apt's download user must be able to write there (else it warns and falls back to root).
    chmod 0777 "$debs" 2>/dev/null || true
    (cd "$debs" && apt-get download "$kernel_pkg:arm64" busybox-static:arm64 >&2)
  fi
  echo "$kernel_pkg"
}

# find_library NAME: the aarch64 library from the multiarch or the cross libc packages.
find_library() {
  local dir
  for dir in /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/aarch64-linux-gnu/lib; do
    [[ -e "$dir/$1" ]] && { readlink -f "$dir/$1"; return; }
  done
  die "no aarch64 $1 on this machine (libc6-dev-arm64-cross)"
}

prepare() {
  local binary="$1" kernel_pkg root tree version modules_dir needed lib mod
  [[ -x "$binary" ]] || die "no binary at $binary (scripts/build-arm64.sh)"
  readelf -h "$binary" | grep -q 'Machine:.*AArch64' || die "$binary is not an AArch64 ELF"
  kernel_pkg="$(fetch_guest_packages)"
  tree="$state/tree"
  rm -rf "$tree" && mkdir -p "$tree"
  for deb in "$debs/${kernel_pkg}"_*_arm64.deb "$debs"/busybox-static_*_arm64.deb; do
    dpkg-deb -x "$deb" "$tree"
  done
  version="${kernel_pkg#linux-image-}"
  cp "$tree/boot/vmlinuz-$version" "$state/vmlinuz"

  root="$state/root"
  rm -rf "$root" && mkdir -p "$root"/{bin,lib,proc,sys,dev,data,tmp,modules}
  cp "$tree/bin/busybox" "$root/bin/busybox"
  install -m 0755 "$binary" "$root/bin/handler"
  # The libraries the binary links, and the dynamic loader it names.
  needed="$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
  for lib in $needed ld-linux-aarch64.so.1; do
    cp "$(find_library "$lib")" "$root/lib/$lib"
  done
  # Network card, disk, file system and entropy: what the init script loads, in dependency order.
  modules_dir="$tree/lib/modules/$version"
  : >"$root/modules/order"
  modules_closure "$modules_dir" virtio_pci virtio_net virtio_blk virtio_rng crc32c_generic ext4 \
    >"$state/modules.list"
  while read -r mod; do
    [[ -n "$mod" ]] || continue
    case "$mod" in
      *.ko.xz) xz -dc "$modules_dir/$mod" >"$root/modules/$(basename "${mod%.xz}")" ;;
      *.ko.zst) zstd -qdc "$modules_dir/$mod" >"$root/modules/$(basename "${mod%.zst}")" ;;
      *) cp "$modules_dir/$mod" "$root/modules/" ;;
    esac
    echo "$(basename "${mod%.*z*}" .ko).ko" >>"$root/modules/order"
  done <"$state/modules.list"
  # The CA bundle distroless/cc-debian12 carries too: the Azure SDK's HTTP client refuses to start
  # without system root certificates (even for plain-http Azurite).
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" \
    || die "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
  cp "$repo/scripts/arm64-guest-init.sh" "$root/init"
  chmod 0755 "$root/init"
  (cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --owner 0:0) >"$state/initramfs.cpio"

  cat >"$state/handler" <<EOF
#!/usr/bin/env bash
# Generated by scripts/arm64-guest.sh prepare: boots the arm64 guest in place of the handler.
MEDIFLOW_ARM64_GUEST_DIR="$state" exec bash "$repo/scripts/arm64-guest.sh" run "\$@"
EOF
  chmod 0755 "$state/handler"
  log "guest ready: kernel $version, $(du -h "$state/initramfs.cpio" | cut -f1) initramfs"
  echo "$state/handler"
}

# --- run ----------------------------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run() {
  [[ -f "$state/initramfs.cpio" && -f "$state/vmlinuz" ]] || die "run scripts/arm64-guest.sh prepare first"
  local work guest_env forwards=() rewrites=() name value host_port data_dir disk host_loopback=0
  work="$(mktemp -d)"
  guest_env="$work/root/guest.env"
  mkdir -p "$work/root"
  : >"$guest_env"
  # The guest's listening ports: 8080 (the API), 9090 (metrics).
  # forward HOST_VALUE GUEST_PORT: forwards the host port (a free one for 0) into the guest and
  # sets host_port to it.
  forward() {
    host_port="${1##*:}"
    [[ "$host_port" == 0 ]] && host_port="$(free_port)"
    forwards+=("hostfwd=tcp:127.0.0.1:$host_port-:$2")
  }
  while IFS= read -r -d '' pair; do
    name="${pair%%=*}"
    value="${pair#*=}"
    case "$name" in
      PATH | PWD | SHLVL | _ | OLDPWD | MEDIFLOW_ARM64_GUEST_DIR) continue ;;
      MEDIFLOW_ADDR)
        [[ "$value" == 127.* || "$value" == "[::1]"* || "$value" == localhost:* ]] && host_loopback=1
        forward "$value" 8080
        rewrites+=("s/0\.0\.0\.0:8080/127.0.0.1:$host_port/g")
        value=0.0.0.0:8080 ;;
      MEDIFLOW_METRICS_ADDR)
        forward "$value" 9090
        rewrites+=("s/0\.0\.0\.0:9090/127.0.0.1:$host_port/g")
        value=0.0.0.0:9090 ;;
      FUNCTIONS_CUSTOMHANDLER_PORT)
        # The handler binds 127.0.0.1 under the Functions host; the guest's init forwards 8080 to it.
        forward "$value" 8080
        rewrites+=("s/127\.0\.0\.1:8081/127.0.0.1:$host_port/g")
        value=8081 ;;
      MEDIFLOW_DATA_DIR)
        data_dir="$value"
        value=/data/store ;;
      *)
        # A file the handler is pointed at (an API keys file): the guest gets a copy at the same path.
        if [[ "$value" == /* && -f "$value" ]]; then
          mkdir -p "$work/root$(dirname "$value")"
          cp "$value" "$work/root$value"
        fi
        value="${value//127.0.0.1/10.0.2.2}" ;;
    esac
    printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}" >>"$guest_env"
  done < <(env -0)
  # The guest binds 0.0.0.0, but only the host's loopback forward reaches it: a test that runs the
  # handler without keys on loopback gets the same fail-closed verdict as natively (allowed), said
  # explicitly, since inside the guest the address is not loopback.
  if [[ "${host_loopback:-0}" == 1 && -z "${MEDIFLOW_API_KEYS_FILE:-}" && -z "${MEDIFLOW_AUTH:-}" ]]; then
    printf "export MEDIFLOW_AUTH='off'\n" >>"$guest_env"
  fi
  printf 'GUEST_ARGS=%q\n' "$*" >>"$guest_env"

  local drive=()
  if [[ -n "${data_dir:-}" ]]; then
    mkdir -p "$data_dir"
    disk="$data_dir/guest-disk.img"
    if [[ ! -f "$disk" ]]; then
      truncate -s 128M "$disk.new"
      mkfs.ext4 -q -F -O ^metadata_csum -E lazy_itable_init=0,lazy_journal_init=0 "$disk.new"
      mv "$disk.new" "$disk"
    fi
    drive=(-drive "file=$disk,format=raw,if=none,id=d0,cache=writeback" -device virtio-blk-pci,drive=d0)
  fi
  # The base initramfs plus a second archive with this run's environment (the kernel unpacks both).
  (cd "$work/root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner 0:0) \
    >"$work/env.cpio"
  cat "$state/initramfs.cpio" "$work/env.cpio" >"$work/initrd"
  local netdev="user,id=n0,restrict=off"
  for f in "${forwards[@]}"; do netdev+=",$f"; done
  # The console carries the handler's log lines; the listening line gets the host address.
  rewrites+=('s/\r$//')
  # Started by the test with a pipe as stdout: qemu becomes this process (exec), sed a child that
  # ends with qemu's output and then removes this run's temporary folder.
  exec qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -display none -monitor none \
    -no-reboot -chardev stdio,id=c0,signal=off -serial chardev:c0 \
    -kernel "$state/vmlinuz" -initrd "$work/initrd" \
    -append "console=ttyAMA0 quiet loglevel=3 panic=-1 rdinit=/init" \
    -netdev "$netdev" -device virtio-net-pci,netdev=n0,romfile= \
    -device virtio-rng-pci "${drive[@]}" \
    </dev/null > >(sed -u "$(IFS=';'; echo "${rewrites[*]}")"; rm -rf "$work")
}

case "${1:-}" in
  prepare) [[ $# == 2 ]] || die "usage: scripts/arm64-guest.sh prepare BINARY"; prepare "$2" ;;
  run) shift; run "$@" ;;
  *) die "usage: scripts/arm64-guest.sh prepare BINARY | run" ;;
esac
