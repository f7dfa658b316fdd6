#!/usr/bin/env bash
# API fuzzing: schemathesis generates requests from the service's own /openapi.json and sends them
# to the real binary (standalone, embedded store, API key auth ON). Fails on any finding:
#   not_a_server_error            no 5xx, whatever the request
#   status_code_conformance       every status is one the document lists for the operation
#   content_type_conformance      every body has the documented media type
#   response_schema_conformance   every body matches the documented schema
#
# Usage: bash .ci/checks/api-fuzz.sh [path/to/handler]      (default target/debug/handler)
# Env:   API_FUZZ_MAX_EXAMPLES (default 250 per operation and phase), API_FUZZ_MAX_TIME (seconds,
#        default 85: a hard bound; a run cut by it fails), API_FUZZ_SEED (default random; printed
#        for replay),
#        API_FUZZ_SPEC (fuzz this document file instead of the served one; used to prove the check
#        fails on a dishonest document, see docs/hardening.md).
# Tools: schemathesis pinned in .ci/checks/requirements-api-fuzz.txt, in .tools/venv-schemathesis.
set -euo pipefail

repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$repo"
binary="${1:-target/debug/handler}"
requirements=".ci/checks/requirements-api-fuzz.txt"
venv=".tools/venv-schemathesis"
max_examples="${API_FUZZ_MAX_EXAMPLES:-250}"
max_time="${API_FUZZ_MAX_TIME:-85}"
seed="${API_FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
# The coverage phase is off by default: with CPython 3.11.7 (this machine's Python), hypothesis's
# description of the coverage phase's filter lambdas raises "SystemError: AST constructor recursion
# depth mismatch" for some seeds (e.g. 856872453) since list_records added query parameters: an
# error of the tool (every generated case passed), not a finding. API_FUZZ_PHASES=examples,coverage,fuzzing
# turns it back on (it passes for most seeds, and on a newer Python).
phases="${API_FUZZ_PHASES:-examples,fuzzing}"

if [ ! -x "$binary" ]; then
  echo "FAIL $binary is not an executable: build it first (cargo build -p handler)" >&2
  exit 1
fi

# The venv, reinstalled only when the requirements file changes.
stamp="$venv/.requirements-$(basename "$requirements").sha256"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
  echo "installing $requirements into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv -r "$requirements"
  sha256sum "$requirements" >"$stamp"
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
api_key="fuzz-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$api_key" >"$work/api-keys"
base="http://127.0.0.1:$port"

env -i PATH="$PATH" \
  MEDIFLOW_ADDR="127.0.0.1:$port" \
  MEDIFLOW_DATA_DIR="$work/data" \
  MEDIFLOW_API_KEYS_FILE="$work/api-keys" \
  RUST_LOG=warn \
  "$binary" >"$work/handler.log" 2>&1 &
pid=$!

ready=""
for _ in $(seq 1 200); do
  if curl -fsS -o /dev/null "$base/ready" 2>/dev/null; then ready=1; break; fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "FAIL the handler did not become ready on $base; its log:" >&2
  cat "$work/handler.log" >&2
  exit 1
fi

location="$base/openapi.json"
url_args=()
if [ -n "${API_FUZZ_SPEC:-}" ]; then
  location="$(realpath "$API_FUZZ_SPEC")"
  url_args=(--url "$base")
fi

echo "schemathesis $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))') against $base (seed $seed, phases $phases, $max_examples examples, at most ${max_time}s)"
status=0
# Run from the temp folder: schemathesis keeps a .schemathesis/ cache in its working directory.
cd "$work"
timeout --signal=INT --kill-after=5 "$max_time" \
  "$repo/$venv/bin/schemathesis" run "$location" "${url_args[@]}" \
  --header "X-API-Key: $api_key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases "$phases" \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check all \
  --no-color \
  --output-sanitize true \
  || status=$?
cd "$repo"

if grep -q '"level":"ERROR"\|ERROR' "$work/handler.log"; then
  echo "FAIL the handler logged errors during the run:" >&2
  grep 'ERROR' "$work/handler.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 124 ] && echo "FAIL the run did not finish within ${max_time}s" >&2
  echo "FAIL api fuzzing (schemathesis exit $status, seed $seed)" >&2
  exit "$status"
fi
echo "PASS api fuzzing (seed $seed)"
