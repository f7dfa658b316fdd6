#!/usr/bin/env bash
# Self-test of the local emulators used by the MediFlow integration tests.
#
#   cd tests/emulators && npm ci && bash selftest.sh
#
# Starts cosmos-emulator.js (HTTP and HTTPS) and azurite-queue on free
# 127.0.0.1 ports, checks the quirk fixes, the ready-line protocol and the
# control API with curl, then stops everything. Needs: bash, node, curl.
# Exits non-zero on any failure. Last line: "selftest: N passed, M failed".
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() { # check "description" command...
  local desc="$1"; shift
  if "$@"; then ok "$desc"; else bad "$desc"; fi
}
finish() {
  echo "selftest: ${PASS} passed, ${FAIL} failed"
  [ "$FAIL" -eq 0 ]
  exit $?
}
abort() { bad "$*"; finish; }

for tool in node curl; do
  command -v "$tool" >/dev/null 2>&1 || abort "'$tool' is not installed"
done
[ -d node_modules/@vercel/cosmosdb-server ] && [ -x node_modules/.bin/azurite-queue ] \
  || abort "node_modules missing: run 'npm ci' in $HERE"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/mediflow-emu-selftest.XXXXXX")"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -INT "$p" 2>/dev/null
  done
  for p in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6; do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

# jget FILE JS-EXPR  -> prints the expression evaluated on the parsed JSON `o`
jget() {
  node -e '
    const fs = require("fs");
    let o;
    try { o = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { process.exit(3); }
    const v = new Function("o", "return (" + process.argv[2] + ")")(o);
    process.stdout.write(typeof v === "object" ? JSON.stringify(v) : String(v));
  ' "$1" "$2"
}
# jtrue FILE JS-EXPR -> success iff the expression is true
jtrue() { [ "$(jget "$1" "$2" 2>/dev/null)" = "true" ]; }

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# wait_for_ready OUTFILE PID -> waits until a "ready <port>" line (max 30 s)
wait_for_ready() {
  local out="$1" pid="$2" i
  for i in $(seq 1 300); do
    grep -q '^ready [0-9][0-9]*$' "$out" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# wait_exit PID SECONDS -> success iff the process is gone within SECONDS
wait_exit() {
  local pid="$1" n=$(($2 * 10)) i
  for i in $(seq 1 "$n"); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------ Cosmos (HTTP)
echo "# cosmos-emulator.js --http"
T0=$(date +%s%N)
node cosmos-emulator.js --http --host 127.0.0.1 --port 0 --control-port 0 >"$TMP/cosmos.out" 2>"$TMP/cosmos.err" &
CPID=$!
PIDS+=("$CPID")
if ! wait_for_ready "$TMP/cosmos.out" "$CPID"; then
  cat "$TMP/cosmos.err" >&2
  abort "cosmos emulator printed no ready line within 30 s"
fi
T1=$(date +%s%N)
ok "ready line after $(((T1 - T0) / 1000000)) ms"

CTRL=$(sed -n '1s/^control \([0-9][0-9]*\)$/\1/p' "$TMP/cosmos.out")
PORT=$(sed -n '2s/^ready \([0-9][0-9]*\)$/\1/p' "$TMP/cosmos.out")
check "stdout is exactly 'control <port>' then 'ready <port>'" \
  test -n "$CTRL" -a -n "$PORT" -a "$(wc -l <"$TMP/cosmos.out")" -eq 2
[ -n "$PORT" ] && [ -n "$CTRL" ] || abort "cannot parse ports from: $(cat "$TMP/cosmos.out")"
echo "# data port $PORT, control port $CTRL"

BASE="http://127.0.0.1:$PORT"
CBASE="http://127.0.0.1:$CTRL"
# The server does not check auth; any Authorization header is accepted.
AUTH=(-H "Authorization: type%3Dmaster%26ver%3D1.0%26sig%3Dselftest" -H "x-ms-version: 2020-07-15")

# req NAME METHOD PATH [curl args...] -> body in $TMP/NAME.json, headers in
# $TMP/NAME.hdr, status code in $TMP/NAME.code, curl exit code returned
req() {
  local name="$1" method="$2" path="$3"; shift 3
  curl -sS --max-time 10 -X "$method" "${AUTH[@]}" -D "$TMP/$name.hdr" -o "$TMP/$name.json" \
    -w '%{http_code}' "$@" "$BASE$path" >"$TMP/$name.code" 2>"$TMP/$name.curlerr"
}
code() { cat "$TMP/$1.code"; }
hdr() { tr -d '\r' <"$TMP/$1.hdr" | awk -v h="$(echo "$2" | tr 'A-Z' 'a-z')" -F': ' 'tolower($1)==h{print $2}'; }
ctl() { # ctl NAME METHOD PATH [json body]
  curl -sS --max-time 10 -X "$2" -o "$TMP/$1.json" -w '%{http_code}' ${4:+-d "$4"} "$CBASE$3" >"$TMP/$1.code" 2>/dev/null
}

req meta GET /
check "GET / -> 200" test "$(code meta)" = 200
check "GET / advertises http://127.0.0.1:$PORT/ locations (quirk 4)" \
  jtrue "$TMP/meta.json" "[...o.writableLocations, ...o.readableLocations].length === 2 && [...o.writableLocations, ...o.readableLocations].every(l => l.databaseAccountEndpoint === 'http://127.0.0.1:$PORT/')"
check "GET / has no https:// anywhere" bash -c "! grep -q 'https://' '$TMP/meta.json'"
check "x-ms-request-charge header present (constant 1)" test "$(hdr meta x-ms-request-charge)" = 1

J=(-H "Content-Type: application/json")
req db POST /dbs "${J[@]}" -d '{"id":"selftestdb"}'
check "create database -> 201" test "$(code db)" = 201
req coll POST /dbs/selftestdb/colls "${J[@]}" -d '{"id":"records","partitionKey":{"paths":["/id"],"kind":"Hash","version":2}}'
check "create collection (pk /id) -> 201" test "$(code coll)" = 201

PK=(-H 'x-ms-documentdb-partitionkey: ["rec-1"]')
req nocoll POST /dbs/selftestdb/colls/nosuchcoll/docs "${J[@]}" "${PK[@]}" -d '{"id":"x"}'
check "create document in a missing collection -> 404 (server crash rewritten)" test "$(code nocoll)" = 404
req create POST /dbs/selftestdb/colls/records/docs "${J[@]}" "${PK[@]}" -d '{"id":"rec-1","trial":"T-001","visits":3}'
check "create document -> 201" test "$(code create)" = 201
ETAG=$(hdr create etag)
check "create returns an etag" test -n "$ETAG"

req get GET /dbs/selftestdb/colls/records/docs/rec-1 "${PK[@]}"
check "GET document -> 200" test "$(code get)" = 200
check "GET document body round-trips" jtrue "$TMP/get.json" "o.id === 'rec-1' && o.trial === 'T-001' && o.visits === 3"

req missing GET /dbs/selftestdb/colls/records/docs/nope -H 'x-ms-documentdb-partitionkey: ["nope"]'
check "GET missing document -> 404 (quirk 3)" test "$(code missing)" = 404
check "GET missing document body has code NotFound" jtrue "$TMP/missing.json" "o.code === 'NotFound' && typeof o.message === 'string'"
req missput PUT /dbs/selftestdb/colls/records/docs/nope "${J[@]}" -H 'x-ms-documentdb-partitionkey: ["nope"]' -d '{"id":"nope"}'
check "replace missing document -> 404 NotFound" \
  bash -c "test \"\$(cat '$TMP/missput.code')\" = 404 && grep -q '\"NotFound\"' '$TMP/missput.json'"
req missdel DELETE /dbs/selftestdb/colls/records/docs/nope -H 'x-ms-documentdb-partitionkey: ["nope"]'
check "delete missing document -> 404 NotFound" \
  bash -c "test \"\$(cat '$TMP/missdel.code')\" = 404 && grep -q '\"NotFound\"' '$TMP/missdel.json'"
req stale PUT /dbs/selftestdb/colls/records/docs/rec-1 "${J[@]}" "${PK[@]}" -H 'If-Match: "stale"' -d '{"id":"rec-1","trial":"T-001","visits":4}'
check "replace with stale If-Match -> 412" test "$(code stale)" = 412

req pkr GET /dbs/selftestdb/colls/records/pkranges
check "GET pkranges -> 200" test "$(code pkr)" = 200
check "pkranges ids are strings (quirk 2)" \
  jtrue "$TMP/pkr.json" "o.PartitionKeyRanges.length > 0 && o.PartitionKeyRanges.every(r => typeof r.id === 'string')"

Q=(-H "Content-Type: application/query+json" -H "x-ms-documentdb-isquery: true")
req fanout POST /dbs/selftestdb/colls/records/docs "${Q[@]}" -H "x-ms-documentdb-partitionkeyrangeid: 0" \
  -d '{"query":"SELECT * FROM c WHERE c.trial = @t","parameters":[{"name":"@t","value":"T-001"}]}'
check "per-range query without partition key -> 200 (quirk 1)" test "$(code fanout)" = 200
check "per-range query returned the document" jtrue "$TMP/fanout.json" "o._count === 1 && o.Documents[0].id === 'rec-1'"

ctl stats1 GET /stats
check "GET /stats -> 200" test "$(cat "$TMP/stats1.code")" = 200
check "stats: 2 point reads (read_doc), 1 query, route key for point read" \
  jtrue "$TMP/stats1.json" "o.kinds.read_doc === 2 && o.kinds.query_docs === 1 && o.routes['GET /dbs/{db}/colls/{coll}/docs/{id}'] === 2 && o.routes['POST /dbs/{db}/colls/{coll}/docs (query)'] === 1"
check "stats: per-database counts and request charge recorded" \
  jtrue "$TMP/stats1.json" "o.dbs.selftestdb.read_doc === 2 && o.request_charge.responses_with_header === o.total && o.request_charge.total === o.total"

ctl reset POST /stats/reset
ctl stats2 GET /stats
check "POST /stats/reset zeroes the counters" jtrue "$TMP/stats2.json" "o.total === 0 && Object.keys(o.kinds).length === 0"

# --- throttle
ctl thr POST /fault/throttle '{"count":2,"retry_after_ms":250}'
check "POST /fault/throttle -> 200" jtrue "$TMP/thr.json" "o.throttle_pending === 2 && o.retry_after_ms === 250"
req meta2 GET /
check "account metadata is not throttled" test "$(code meta2)" = 200
req t1 GET /dbs/selftestdb/colls/records/docs/rec-1 "${PK[@]}"
check "throttled point read -> 429" test "$(code t1)" = 429
check "429 carries x-ms-retry-after-ms: 250" test "$(hdr t1 x-ms-retry-after-ms)" = 250
check "429 carries x-ms-substatus: 3200" test "$(hdr t1 x-ms-substatus)" = 3200
check "429 body code TooManyRequests" jtrue "$TMP/t1.json" "o.code === 'TooManyRequests'"
req t2 POST /dbs/selftestdb/colls/records/docs "${J[@]}" -H 'x-ms-documentdb-partitionkey: ["rec-2"]' -d '{"id":"rec-2"}'
check "second document op (create) -> 429" test "$(code t2)" = 429
req t3 GET /dbs/selftestdb/colls/records/docs/rec-1 "${PK[@]}"
check "third document op passes -> 200" test "$(code t3)" = 200
req t4 GET /dbs/selftestdb/colls/records/docs/rec-2 -H 'x-ms-documentdb-partitionkey: ["rec-2"]'
check "throttled create did not store the document" test "$(code t4)" = 404
ctl stats3 GET /stats
check "stats: throttled=2, status_429=2, statuses['429']=2" \
  jtrue "$TMP/stats3.json" "o.throttled === 2 && o.status_429 === 2 && o.statuses['429'] === 2 && o.throttle_pending === 0"
ctl thrk POST /fault/throttle '{"count":1,"retry_after_ms":10,"kinds":["query_docs"]}'
req t5 GET /dbs/selftestdb/colls/records/docs/rec-1 "${PK[@]}"
req t6 POST /dbs/selftestdb/colls/records/docs "${Q[@]}" "${PK[@]}" -d '{"query":"SELECT * FROM c WHERE c.id = \"rec-1\""}'
check "throttle with kinds=[query_docs] skips point reads, hits the query" \
  test "$(code t5):$(code t6)" = "200:429"
ctl badthr POST /fault/throttle '{"count":-1}'
check "invalid throttle body -> 400" test "$(cat "$TMP/badthr.code")" = 400

# --- down / up
ctl down POST /fault/down
check "POST /fault/down -> data_up false" jtrue "$TMP/down.json" "o.data_up === false && o.data_port === $PORT"
curl -sS --max-time 5 -o /dev/null "$BASE/" 2>"$TMP/refused.err"
RC=$?
check "while down: connection refused (curl exit 7, got $RC)" test "$RC" = 7
ctl state GET /state
check "control API still answers while down" jtrue "$TMP/state.json" "o.data_up === false"
ctl up POST /fault/up
check "POST /fault/up -> data_up true on the same port" jtrue "$TMP/up.json" "o.data_up === true && o.data_port === $PORT"
req after GET /dbs/selftestdb/colls/records/docs/rec-1 "${PK[@]}"
check "after up: document still there (data kept in memory)" \
  bash -c "test \"\$(cat '$TMP/after.code')\" = 200 && grep -q 'T-001' '$TMP/after.json'"
check "after up: same etag as created" test "$(hdr after etag)" = "$ETAG"
ctl up2 POST /fault/up
check "POST /fault/up when already up is a no-op" jtrue "$TMP/up2.json" "o.data_up === true"

kill -TERM "$CPID"
check "SIGTERM -> exits within 3 s" wait_exit "$CPID" 3
wait "$CPID" 2>/dev/null
RC=$?
check "exit code after SIGTERM is 0 (got $RC)" test "$RC" = 0
check "no unexpected stderr output (only launcher lines)" \
  bash -c "! grep -v '^cosmos-emulator: ' '$TMP/cosmos.err'"

# ----------------------------------------------------------- Cosmos (HTTPS)
echo "# cosmos-emulator.js (HTTPS, no control port)"
node cosmos-emulator.js --host 127.0.0.1 --port 0 >"$TMP/cosmoss.out" 2>"$TMP/cosmoss.err" &
SPID=$!
PIDS+=("$SPID")
if wait_for_ready "$TMP/cosmoss.out" "$SPID"; then
  SPORT=$(sed -n 's/^ready \([0-9][0-9]*\)$/\1/p' "$TMP/cosmoss.out")
  check "HTTPS: stdout is exactly one 'ready <port>' line" test "$(wc -l <"$TMP/cosmoss.out")" -eq 1
  curl -sSk --max-time 10 -o "$TMP/smeta.json" "https://127.0.0.1:$SPORT/" 2>/dev/null
  check "HTTPS: GET / advertises https:// locations" \
    jtrue "$TMP/smeta.json" "o.writableLocations[0].databaseAccountEndpoint === 'https://127.0.0.1:$SPORT/'"
  curl -sSk --max-time 10 -o "$TMP/spkr.json" -X POST -H "Content-Type: application/json" -d '{"id":"d"}' "https://127.0.0.1:$SPORT/dbs" 2>/dev/null
  curl -sSk --max-time 10 -o /dev/null -X POST -H "Content-Type: application/json" -d '{"id":"c","partitionKey":{"paths":["/id"],"kind":"Hash"}}' "https://127.0.0.1:$SPORT/dbs/d/colls" 2>/dev/null
  curl -sSk --max-time 10 -o "$TMP/spkr.json" "https://127.0.0.1:$SPORT/dbs/d/colls/c/pkranges" 2>/dev/null
  check "HTTPS: pkranges ids are strings" jtrue "$TMP/spkr.json" "o.PartitionKeyRanges.every(r => typeof r.id === 'string')"
else
  bad "HTTPS: no ready line"
fi
kill -INT "$SPID"
check "SIGINT -> exits within 3 s" wait_exit "$SPID" 3

# ------------------------------------------------------------ Azurite queue
echo "# azurite-queue"
QPORT=$(free_port)
mkdir -p "$TMP/azurite"
T0=$(date +%s%N)
node_modules/.bin/azurite-queue --queueHost 127.0.0.1 --queuePort "$QPORT" --location "$TMP/azurite" \
  --silent --skipApiVersionCheck >"$TMP/azurite.out" 2>"$TMP/azurite.err" &
APID=$!
PIDS+=("$APID")
QCODE=000
for _ in $(seq 1 600); do
  QCODE=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$QPORT/devstoreaccount1?comp=list" 2>/dev/null)
  [ "$QCODE" != 000 ] && break
  kill -0 "$APID" 2>/dev/null || break
  sleep 0.1
done
T1=$(date +%s%N)
check "azurite-queue answers HTTP on port $QPORT (status $QCODE after $(((T1 - T0) / 1000000)) ms)" \
  test "$QCODE" != 000
kill -INT "$APID" 2>/dev/null
if wait_exit "$APID" 3; then
  ok "azurite-queue exited after SIGINT"
else
  kill -KILL "$APID" 2>/dev/null
  check "azurite-queue killed with SIGKILL after 3 s" wait_exit "$APID" 2
fi

finish
