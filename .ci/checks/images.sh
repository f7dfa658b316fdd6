#!/usr/bin/env bash
# Builds the final stages of both Dockerfile targets offline with buildah and checks what an
# operator relies on: user 65532, entrypoint, exposed ports, environment and the file layout.
#
#   bash .ci/checks/images.sh [BINARY [ARM64_BINARY]]
#     BINARY defaults to target/debug/handler; ARM64_BINARY to what `scripts/build-arm64.sh
#     --features emulator` builds (the same features as the tests' binaries, so one build serves both)
#
# No registry but crates.io/PyPI/npm/Debian is reachable here, so the real bases
# (gcr.io/distroless/cc-debian12, mcr.microsoft.com/azure-functions/dotnet) are replaced by tiny
# stand-ins built from scratch and tagged with the real names; the compile stage is replaced by
# HANDLER_SOURCE=prebuilt with BINARY. What this proves: the COPY paths, user, entrypoint, ports and
# env of our stages. What it cannot prove: the real bases' contents, and the compile stage.
#
# arm64: the standalone image is built for linux/arm64 too, from the real cross-built handler
# (ARM64_BINARY, or scripts/build-arm64.sh builds it), the two go into one manifest list, and the
# arm64 image's /handler is booted in an emulated arm64 machine (scripts/arm64-guest.sh) to answer
# /health and a record round trip.
#
# Self-test: a Dockerfile with a wrong user must fail the same assertions (proves they can fail).
set -euo pipefail

repo_root="$(git rev-parse --show-toplevel)"
cd "$repo_root"
binary="${1:-target/debug/handler}"
arm64_binary="${2:-}"

fail() { echo "images.sh: FAIL: $*" >&2; exit 1; }
note() { echo "images.sh: $*"; }

[[ -f "$binary" && -x "$binary" ]] || fail "binary '$binary' is missing or not executable (build it first: cargo build)"
if [[ -z "$arm64_binary" ]]; then
  note "building the arm64 handler (scripts/build-arm64.sh)"
  arm64_binary="$(bash scripts/build-arm64.sh --features emulator)" || fail "the arm64 cross-build failed"
fi
[[ -f "$arm64_binary" && -x "$arm64_binary" ]] || fail "arm64 binary '$arm64_binary' is missing or not executable"
[[ -f host.json ]] || fail "host.json is missing at the repo root (the functions image needs it)"
compgen -G "function-definitions/*/function.json" >/dev/null \
  || fail "no function-definitions/<Function>/function.json found (the functions image needs them)"

apt_install() {
  [[ "$(id -u)" == 0 ]] || fail "$* is missing and installing it needs root (apt-get install -y $*)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v buildah >/dev/null || { note "installing buildah (Debian)"; apt_install buildah; }
command -v buildah >/dev/null || fail "buildah could not be installed"

work="$(mktemp -d)"
cleanup() {
  [[ -z "${guest_pid:-}" ]] || { kill "$guest_pid" 2>/dev/null || true; }
  # vfs layers are plain directories; unmount anything still mounted before removing them.
  buildah "${storage[@]}" unmount --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# A private image store, so the check neither sees nor leaves images in the machine's store.
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
bah() { buildah "${storage[@]}" "$@"; }
# BUILDARCH is only read by the compile stage, which HANDLER_SOURCE=prebuilt skips.
# The Dockerfile pins its bases by digest; the stand-ins below are passed in their place.
build() {
  bah bud --quiet --isolation chroot --pull=never --layers=false --build-arg BUILDARCH=amd64 \
    --build-arg STANDALONE_BASE="$STANDALONE_BASE" --build-arg FUNCTIONS_BASE="$FUNCTIONS_BASE" "$@" >/dev/null
}

# Stand-ins carry the tag only (no registry, no digest offline); the builds pass them by build-arg.
readonly STANDALONE_BASE=gcr.io/distroless/cc-debian12:nonroot
readonly FUNCTIONS_BASE=mcr.microsoft.com/azure-functions/dotnet:4
readonly FUNCTIONS_BASE_CMD='["/azure-functions-host/Microsoft.Azure.WebJobs.Script.WebHost"]'

# --- stand-in base images ----------------------------------------------------------------------
# standalone_base ARCH NAME: a distroless-like root (passwd with nonroot 65532, /tmp), user 65532.
standalone_base() {
  local arch="$1" name="$2" ctr mnt
  ctr="$(bah from --arch "$arch" scratch)"
  mnt="$(bah mount "$ctr")"
  mkdir -p "$mnt/etc" "$mnt/home/nonroot" "$mnt/tmp"
  chmod 1777 "$mnt/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$mnt/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$mnt/etc/group"
  bah unmount "$ctr" >/dev/null
  bah config --arch "$arch" --os linux --user 65532 --workingdir /home/nonroot \
    --label org.mediflow.stand-in=distroless "$ctr"
  bah commit --quiet "$ctr" "$name" >/dev/null
  bah rm "$ctr" >/dev/null
}
# functions_base: a Functions-host-like root (amd64 only, as the real one) with the host's CMD.
functions_base() {
  local ctr mnt
  ctr="$(bah from --arch amd64 scratch)"
  mnt="$(bah mount "$ctr")"
  mkdir -p "$mnt/azure-functions-host" "$mnt/home/site/wwwroot" "$mnt/tmp"
  chmod 1777 "$mnt/tmp"
  bah unmount "$ctr" >/dev/null
  bah config --arch amd64 --os linux --cmd "$FUNCTIONS_BASE_CMD" \
    --env ASPNETCORE_URLS=http://+:80 --label org.mediflow.stand-in=functions-host "$ctr"
  bah commit --quiet "$ctr" "$FUNCTIONS_BASE" >/dev/null
  bah rm "$ctr" >/dev/null
}

# --- the source build's context: what .dockerignore lets through must load the workspace -------
# (cargo reads every member's manifest; a member left out of the allow-list breaks the source
# build, which this check never runs: it builds from prebuilt binaries, and there is no Docker.
# Not --offline: run on its own, on a fresh machine, cargo fetches what the lock file names.)
source_context="$work/source-context"
mkdir -p "$source_context"
while IFS= read -r allowed; do
  path="${allowed#!}"
  path="${path%/}"
  [[ -e "$path" ]] || continue
  mkdir -p "$source_context/$(dirname "$path")"
  cp -R "$path" "$source_context/$path"
done < <(grep '^!' .dockerignore)
(cd "$source_context" && cargo metadata --locked --format-version 1 >/dev/null) \
  || fail "the Docker build context (.dockerignore's allow-list) does not load the workspace"
[[ ! -e "$source_context/target" && ! -e "$source_context/.git" ]] || fail ".dockerignore lets target/ or .git in"

# --- build context: what .dockerignore lets through, plus the prebuilt binaries -----------------
context="$work/context"
mkdir -p "$context/prebuilt/linux-amd64"
cp Dockerfile .dockerignore host.json "$context/"
cp -R function-definitions "$context/"
cp "$binary" "$context/prebuilt/linux-amd64/handler"
# Compare against this snapshot: a concurrent cargo build may replace $binary during the run.
binary_name="$binary"
binary="$context/prebuilt/linux-amd64/handler"

# --- assertions ---------------------------------------------------------------------------------
# check_config IMAGE ARCH USER ENTRYPOINT_JSON CMD_JSON PORTS ENV...: the OCI config must match.
check_config() {
  local image="$1"
  # (Explicit `|| return`: set -e does not apply inside a function called from `if` or `||`.)
  bah inspect --type image "$image" >"$work/inspect.json" || return 1
  python3 - "$work/inspect.json" "${@:2}" <<'PY'
import json, sys
oci = json.load(open(sys.argv[1]))["OCIv1"]
arch, user, entrypoint, cmd, ports, *env = sys.argv[2:]
config = oci.get("config", {})
problems = []
def expect(what, got, want):
    if got != want:
        problems.append(f"{what}: got {got!r}, want {want!r}")
expect("architecture", oci.get("architecture"), arch)
expect("user", config.get("User"), user)
expect("entrypoint", config.get("Entrypoint"), json.loads(entrypoint))
expect("cmd", config.get("Cmd"), json.loads(cmd))
expect("exposed ports", sorted(config.get("ExposedPorts", {})), sorted(ports.split()))
have_env = config.get("Env", [])
for pair in env:
    if pair not in have_env:
        problems.append(f"env {pair!r} missing (have {have_env})")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
PY
}

# mount_image IMAGE [ARCH]: prints the mount point of a working container of IMAGE.
mount_image() {
  local ctr
  ctr="$(bah from --pull=never --arch "${2:-amd64}" "$1")"
  bah mount "$ctr"
}

# same_file A B [MODE]: identical bytes, and the octal mode when given.
same_file() {
  cmp -s "$1" "$2" || fail "$2 differs from $1"
  if [[ $# -ge 3 ]]; then
    [[ "$(stat -c %a "$2")" == "$3" ]] || fail "$2 has mode $(stat -c %a "$2"), want $3"
  fi
}

# elf_machine FILE: the ELF machine name, or nothing for a non-ELF stand-in.
elf_machine() { { readelf -h "$1" 2>/dev/null || true; } | sed -n 's/^ *Machine: *//p'; }

# distroless/cc provides glibc and libgcc_s only: a binary needing more would not start there.
check_links() {
  local needed extra
  needed="$({ readelf -d "$1" 2>/dev/null || true; } | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
  extra="$(grep -vE '^(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux-(x86-64|aarch64))\.so(\.[0-9]+)*$' <<<"$needed" || true)"
  [[ -z "$extra" ]] || fail "$1 needs libraries the distroless/cc base does not have: $extra"
}

standalone_env=(MEDIFLOW_ADDR=0.0.0.0:8080 MEDIFLOW_METRICS_ADDR=0.0.0.0:9090)
functions_env=(FUNCTIONS_WORKER_RUNTIME=custom AzureWebJobsScriptRoot=/home/site/wwwroot
  ASPNETCORE_URLS=http://+:8080 MEDIFLOW_METRICS_ADDR=0.0.0.0:9090)

start=$SECONDS
standalone_base amd64 "$STANDALONE_BASE"
functions_base

# --- self-test: the assertions reject an image with the wrong user ------------------------------
sed 's/^USER 65532:65532$/USER 0:0/' Dockerfile >"$context/Dockerfile.broken"
grep -q '^USER 0:0$' "$context/Dockerfile.broken" || fail "self-test could not break the Dockerfile"
build -f "$context/Dockerfile.broken" --platform linux/amd64 --build-arg HANDLER_SOURCE=prebuilt \
  --target standalone -t localhost/mediflow-broken:check "$context"
if check_config localhost/mediflow-broken:check amd64 65532:65532 '["/handler"]' null \
  "8080/tcp 9090/tcp" 2>"$work/self-test.err"; then
  fail "self-test: an image running as root passed the config check"
fi
grep -q "^user: got '0:0'" "$work/self-test.err" \
  || fail "self-test: the check failed for another reason: $(cat "$work/self-test.err")"
note "self-test ok: an image with USER 0 is rejected"

# --- standalone, linux/amd64 --------------------------------------------------------------------
build --platform linux/amd64 --build-arg HANDLER_SOURCE=prebuilt --target standalone \
  -t localhost/mediflow:check "$context"
check_config localhost/mediflow:check amd64 65532:65532 '["/handler"]' null "8080/tcp 9090/tcp" \
  "${standalone_env[@]}" || fail "standalone (amd64) image config"
mnt="$(mount_image localhost/mediflow:check)"
same_file "$binary" "$mnt/handler" 755
# The stand-in base's root holds etc, home and tmp: the standalone stage may add /handler only.
root_entries="$(find "$mnt" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | paste -sd ' ' -)"
[[ "$root_entries" == "etc handler home tmp" ]] \
  || fail "standalone image root is '$root_entries', want the base (etc home tmp) plus handler"
machine="$(elf_machine "$binary")"
if [[ -n "$machine" ]]; then
  [[ "$machine" == *X86-64* ]] || fail "$binary_name is $machine, not x86-64"
  check_links "$binary"
else
  note "$binary_name is not an ELF file (a stand-in): architecture and library checks skipped"
fi
layer_bytes="$(stat -c %s "$mnt/handler")"
note "standalone linux/amd64 ok: /handler (${layer_bytes} bytes) as 65532, ports 8080 9090"

# --- functions, linux/amd64 ---------------------------------------------------------------------
build --platform linux/amd64 --build-arg HANDLER_SOURCE=prebuilt --target functions \
  -t localhost/mediflow-functions:check "$context"
check_config localhost/mediflow-functions:check amd64 65532:65532 null "$FUNCTIONS_BASE_CMD" \
  "8080/tcp 9090/tcp" "${functions_env[@]}" || fail "functions image config"
mnt="$(mount_image localhost/mediflow-functions:check)"
app="$mnt/home/site/wwwroot"
same_file "$binary" "$app/handler" 755
same_file host.json "$app/host.json"
for definition in function-definitions/*/function.json; do
  name="$(basename "$(dirname "$definition")")"
  same_file "$definition" "$app/$name/function.json"
done
[[ ! -e "$app/function-definitions" ]] || fail "function-definitions/ must be flattened into the app root"
note "functions linux/amd64 ok: handler, host.json and $(find function-definitions -mindepth 2 -maxdepth 2 -name function.json | wc -l) function(s) in /home/site/wwwroot"

# --- standalone, linux/arm64, from the real cross-built handler ---------------------------------
mkdir -p "$context/prebuilt/linux-arm64"
cp "$arm64_binary" "$context/prebuilt/linux-arm64/handler"
arm64_binary_name="$arm64_binary"
arm64_binary="$context/prebuilt/linux-arm64/handler"
[[ "$(elf_machine "$arm64_binary")" == *AArch64* ]] || fail "$arm64_binary_name is not an AArch64 ELF"
check_links "$arm64_binary"
# The stand-in arm64 base cannot share the amd64 stand-in's name in one store: pass it by build-arg.
standalone_base arm64 localhost/standin/distroless-cc:nonroot-arm64
build --platform linux/arm64 --build-arg HANDLER_SOURCE=prebuilt \
  --build-arg STANDALONE_BASE=localhost/standin/distroless-cc:nonroot-arm64 \
  --target standalone -t localhost/mediflow:check-arm64 "$context"
check_config localhost/mediflow:check-arm64 arm64 65532:65532 '["/handler"]' null "8080/tcp 9090/tcp" \
  "${standalone_env[@]}" || fail "standalone (arm64) image config"
arm64_mnt="$(mount_image localhost/mediflow:check-arm64 arm64)"
same_file "$arm64_binary" "$arm64_mnt/handler" 755
[[ "$(elf_machine "$arm64_mnt/handler")" == *AArch64* ]] || fail "arm64 image holds a non-AArch64 /handler"
note "standalone linux/arm64 ok: /handler ($(stat -c %s "$arm64_mnt/handler") bytes, AArch64) as 65532"

# --- the multi-arch manifest list (what `buildx --platform linux/amd64,linux/arm64` pushes) ------
bah manifest create localhost/mediflow:check-multiarch >/dev/null
bah manifest add localhost/mediflow:check-multiarch localhost/mediflow:check >/dev/null
bah manifest add localhost/mediflow:check-multiarch localhost/mediflow:check-arm64 >/dev/null
bah manifest inspect localhost/mediflow:check-multiarch >"$work/manifest.json"
platforms="$(python3 -c '
import json, sys
index = json.load(open(sys.argv[1]))
print(" ".join(sorted(m["platform"]["os"] + "/" + m["platform"]["architecture"] for m in index["manifests"])))
' "$work/manifest.json")"
[[ "$platforms" == "linux/amd64 linux/arm64" ]] || fail "manifest list has platforms '$platforms'"
note "manifest list ok: $platforms"

# --- the arm64 image's binary, booted in an emulated arm64 machine ------------------------------
# qemu-user hangs at the first thread on this Debian; scripts/arm64-guest.sh boots a Debian arm64
# kernel instead. The image's own environment, with the listening ports and the data folder moved
# to the host's loopback and a scratch folder.
MEDIFLOW_ARM64_GUEST_DIR="$work/guest" bash scripts/arm64-guest.sh prepare "$arm64_mnt/handler" \
  >"$work/launcher" || fail "could not prepare the arm64 guest"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
image_env=()
while IFS= read -r pair; do image_env+=("$pair"); done < <(
  bah inspect --type image localhost/mediflow:check-arm64 \
    | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)["OCIv1"]["config"]["Env"]))')
env -i "${image_env[@]}" PATH="$PATH" MEDIFLOW_ADDR="127.0.0.1:$port" MEDIFLOW_METRICS_ADDR=127.0.0.1:0 \
  MEDIFLOW_DATA_DIR="$work/guest-data" \
  "$(cat "$work/launcher")" >"$work/guest.log" 2>&1 &
guest_pid=$!
stop_guest() { kill "$guest_pid" 2>/dev/null || true; wait "$guest_pid" 2>/dev/null || true; }
booted=$SECONDS
until curl -fsS "http://127.0.0.1:$port/health" >"$work/health.json" 2>/dev/null; do
  if ! kill -0 "$guest_pid" 2>/dev/null || (( SECONDS - booted > 180 )); then
    stop_guest
    fail "the arm64 handler never answered /health; guest console:
$(tail -n 40 "$work/guest.log")"
  fi
  sleep 1
done
grep -q '"status":"ok"' "$work/health.json" || { stop_guest; fail "/health answered $(cat "$work/health.json")"; }
record='{"site_id":"site001","trial_phase":"II","submission_date":"2025-03-15","status":"pending","patient_count":42,"notes":"arm64 image"}'
created="$(curl -fsS -X POST "http://127.0.0.1:$port/records" -H 'content-type: application/json' -d "$record")" \
  || { stop_guest; fail "POST /records failed on the arm64 handler"; }
id="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$created")"
fetched="$(curl -fsS "http://127.0.0.1:$port/records/$id")" || { stop_guest; fail "GET /records/$id failed"; }
stop_guest
[[ "$fetched" == "$created" ]] || fail "arm64 round trip: GET answered $fetched, POST answered $created"
note "standalone linux/arm64 ok: the image's /handler booted under qemu-system-aarch64 answered /health in $((SECONDS - booted)) s and round-tripped record $id"

note "all image checks passed in $((SECONDS - start)) s"
