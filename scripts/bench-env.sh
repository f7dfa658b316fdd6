# Sourced by the benchmark scripts (bench.sh, bench-cli.sh, profile.sh): where the build goes and
# the measuring tools, each installed when missing.
#   $target_dir         cargo's target dir (honours CARGO_TARGET_DIR and .cargo/config)
#   oha_path KIND       prints the path of oha $OHA_VERSION, built once with `cargo install
#                       --locked` into $target_dir/tools/KIND (release: the full benchmark; debug: a
#                       cheaper build for the smoke run, whose figures mean nothing)
#   need_hyperfine      installs Debian's hyperfine when it is not on PATH (needs root)
OHA_VERSION=1.16.0
target_dir=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || { echo "cargo metadata named no target directory" >&2; exit 1; }

oha_path() {
  local kind=$1 root="$target_dir/tools/$1" build flags=()
  [ "$kind" = debug ] && flags=(--debug)
  if [ "$("$root/bin/oha" --version 2>/dev/null)" != "oha $OHA_VERSION" ]; then
    echo "installing oha $OHA_VERSION ($kind build, once, into $root)" >&2
    mkdir -p "$target_dir/tools"
    build=$(mktemp -d "$target_dir/tools/build.XXXXXX")
    CARGO_TARGET_DIR="$build" cargo install oha --version "$OHA_VERSION" --locked --force \
      "${flags[@]}" --root "$root" >&2
    rm -rf "$build"
  fi
  echo "$root/bin/oha"
}

need_hyperfine() {
  command -v hyperfine >/dev/null && return 0
  echo "installing hyperfine (Debian)" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >&2
}

# The executable of the criterion bench `in_process` that `cargo "$@" --message-format=json` builds.
bench_executable() {
  cargo "$@" --message-format=json \
    | sed -n 's/.*"name":"in_process".*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
}

# The malloc settings of the standalone image (the Dockerfile's ENV), so the service is measured as
# it runs there.
image_malloc_tunables=$(sed -n 's/^ *GLIBC_TUNABLES=\([^ ]*\).*/\1/p' Dockerfile)
