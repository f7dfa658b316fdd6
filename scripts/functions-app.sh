#!/usr/bin/env bash
# Assembles a Functions app folder for `func start` (Azure Functions Core Tools) or the Functions
# image: host.json, one <function>/function.json folder per function, and the handler binary.
# Usage: scripts/functions-app.sh [--release]   -> prints the folder (target/functions-app)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
if [ "${1:-}" = "--release" ]; then profile=release; cargo build --release -p handler >&2; else cargo build -p handler >&2; fi
app=target/functions-app
rm -rf "$app" && mkdir -p "$app"
cp host.json "$app/"
cp -r function-definitions/* "$app/"
cp "target/$profile/handler" "$app/handler"
cat > "$app/local.settings.json" <<'JSON'
{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "custom",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "MEDIFLOW_QUEUE": "UseDevelopmentStorage=true",
    "MEDIFLOW_DATA_DIR": "mediflow-data"
  }
}
JSON
echo "$app"
