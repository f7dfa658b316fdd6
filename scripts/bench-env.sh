# Sourced by the benchmark scripts (bench.sh, bench-cli.sh, profile.sh, bench-paced.sh): where the
# build goes, the measuring tools (each installed when missing), and how a target is started.
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

# The key the harness sends and what every POST sends, read from the harness's own constants
# (API_KEY in bench/harness/src/servers.rs, RECORD_BODY in bench/harness/src/client.rs).
bench_key=$(sed -n 's/^pub const API_KEY: &str = "\(.*\)";$/\1/p' bench/harness/src/servers.rs)
record_body=$(sed -n 's/^pub const RECORD_BODY: &str = r#"\(.*\)"#;$/\1/p' bench/harness/src/client.rs)
[ -n "$bench_key" ] && [ -n "$record_body" ] || { echo "bench-env: API_KEY or RECORD_BODY not found in bench/harness/src" >&2; exit 1; }

# start_target TARGET SCRATCH: starts TARGET pinned to CPU 1 on port 0, its store in an empty
# SCRATCH/data and auth on with SCRATCH/keys; sets $server (its pid) and $addr (the address its
# start-up line names) once it answers /health. TARGET: service (this tree's release handler),
# service@PATH (another handler binary, for a before/after in one run), floor, durable-floor,
# store-floor (`harness store-floor`: the HTTP stack in front of the service's store).
start_target() {
  local target=$1 scratch=$2 bin="$target_dir/release/handler"
  rm -rf "$scratch/data" && mkdir -p "$scratch/data"
  printf '%s\n' "$bench_key" >"$scratch/keys"
  case "$target" in
    service|service@*)
      [[ "$target" == service@* ]] && bin="${target#service@}"
      env -u RUST_LOG GLIBC_TUNABLES="$image_malloc_tunables" MEDIFLOW_ADDR=127.0.0.1:0 MEDIFLOW_DATA_DIR="$scratch/data" LOG_FORMAT=json \
        MEDIFLOW_API_KEYS_FILE="$scratch/keys" taskset -c 1 "$bin" >"$scratch/out" 2>&1 &
      ;;
    floor) taskset -c 1 "$target_dir/release/floor" 127.0.0.1:0 >"$scratch/out" 2>&1 & ;;
    durable-floor) taskset -c 1 "$target_dir/release/floor" 127.0.0.1:0 "$scratch/data/journal" >"$scratch/out" 2>&1 & ;;
    store-floor) taskset -c 1 "$target_dir/release/harness" store-floor 127.0.0.1:0 "$scratch/data" >"$scratch/out" 2>&1 & ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  server=$!
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p' "$scratch/out" | head -n 1)
    [ -n "$addr" ] && curl -fsS "http://$addr/health" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "$target did not answer /health" >&2
  exit 1
}
