#!/usr/bin/env node
// MediFlow test launcher for @vercel/cosmosdb-server 1.0.1.
//
// Wraps the package's createHttpServer()/createHttpsServer() and
//   * fixes the four wire quirks the Rust SDK (azure_data_cosmos 1.0) trips on,
//   * optionally serves a control / fault-injection API on a second port.
//
// Stdout protocol (nothing else is ever written to stdout):
//   control <port>   only with --control-port, always printed first
//   ready <port>     the data (Cosmos) port is listening; always the last line
// Diagnostics go to stderr. See README.md in this folder for the details.
"use strict";

const http = require("http");
const crypto = require("crypto");
const cosmos = require("@vercel/cosmosdb-server");

const USAGE = `Usage: node cosmos-emulator.js [options]

  --http                 plain HTTP (recommended); default is HTTPS with the
                         package's bundled self-signed certificate
  --host <addr>          listen address for both ports (default 127.0.0.1)
  --port <n>             data port; 0 = pick a free port (default 0)
  --control-port <n>     enable the control API on this port; 0 = free port
  --exit-on-stdin-eof    exit when stdin closes (dies with the parent process)
  --quiet                no informational stderr lines (errors still printed)
  -h, --help             this text

Prints "control <port>" (if enabled) and then "ready <port>" on stdout.`;

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const opts = { http: false, host: "127.0.0.1", port: 0, controlPort: null, stdinEof: false, quiet: false };
  const num = (flag, v) => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0 || n > 65535) {
      fail(`${flag} needs a port number (0-65535), got ${v === undefined ? "nothing" : JSON.stringify(v)}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    switch (a) {
      case "--http":
      case "--no-ssl":
        opts.http = true;
        break;
      case "--https":
        opts.http = false;
        break;
      case "--host":
        opts.host = argv[++i];
        if (!opts.host) fail("--host needs an address");
        break;
      case "--port":
      case "-p":
        opts.port = num(a, argv[++i]);
        break;
      case "--control-port":
        opts.controlPort = num(a, argv[++i]);
        break;
      case "--exit-on-stdin-eof":
        opts.stdinEof = true;
        break;
      case "--quiet":
        opts.quiet = true;
        break;
      case "-h":
      case "--help":
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        fail(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
    }
  }
  return opts;
}

function fail(msg) {
  process.stderr.write(`cosmos-emulator: ${msg}\n`);
  process.exit(2);
}

let quiet = false;

function log(msg) {
  process.stderr.write(`cosmos-emulator: ${msg}\n`);
}

function info(msg) {
  if (!quiet) log(msg);
}

// ---------------------------------------------------------- request kinds

const DOCS_RE = /^\/dbs\/([^/]+)\/colls\/([^/]+)\/docs(?:\/([^/]+))?$/;

function isTrue(v) {
  if (Array.isArray(v)) return v.some(isTrue);
  return typeof v === "string" && v.toLowerCase() === "true";
}

function normalisePath(url) {
  let p = (url || "/").split("?")[0];
  // Same normalisation as the package's router: "//x" -> "/x", no trailing "/".
  if (p.startsWith("//")) p = p.slice(1);
  while (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  return p;
}

function isQuery(req) {
  return (
    req.method === "POST" &&
    (isTrue(req.headers["x-ms-documentdb-isquery"]) ||
      req.headers["content-type"] === "application/query+json")
  );
}

// Returns { kind, route, db } for a data-plane request.
//   kind:  a short name (read_doc, query_docs, ...) used by /stats and throttling
//   route: "METHOD /template[ (op)]" e.g. "GET /dbs/{db}/colls/{coll}/docs/{id}"
function classify(req, path) {
  const m = req.method;
  const segs = path === "/" ? [] : path.split("/").slice(1);
  const db = segs[0] === "dbs" && segs[1] ? decodeURIComponent(segs[1]) : null;
  let template = "/";
  if (segs.length) {
    const names = { 1: "{db}", 3: "{coll}", 5: "{id}" };
    template = `/${segs.map((s, i) => names[i] || s).join("/")}`;
  }
  let op = "";
  if (m === "POST") {
    if (isQuery(req)) op = "query";
    else if (isTrue(req.headers["x-ms-documentdb-is-upsert"])) op = "upsert";
    else if (isTrue(req.headers["x-ms-cosmos-is-batch-request"])) op = "batch";
  }
  const route = `${m} ${template}${op ? ` (${op})` : ""}`;

  let kind = "other";
  const docs = DOCS_RE.exec(path);
  if (path === "/" && m === "GET") kind = "meta";
  else if (docs && docs[3] !== undefined) {
    kind = { GET: "read_doc", PUT: "replace_doc", PATCH: "patch_doc", DELETE: "delete_doc" }[m] || "other_doc";
  } else if (docs) {
    if (m === "GET") kind = "read_feed";
    else if (m === "POST") kind = { query: "query_docs", upsert: "upsert_doc", batch: "batch_docs", "": "create_doc" }[op];
    else kind = "other_doc";
  } else if (/^\/dbs\/[^/]+\/colls\/[^/]+\/pkranges$/.test(path)) kind = "pkranges";
  else if (/^\/dbs\/[^/]+\/colls\/[^/]+\/udfs(\/[^/]+)?$/.test(path)) kind = "udf";
  else if (/^\/dbs\/[^/]+\/colls(\/[^/]+)?$/.test(path)) kind = "collection";
  else if (/^\/dbs(\/[^/]+)?$/.test(path)) kind = "database";
  return { kind, route, db, isDocs: Boolean(docs) };
}

// ------------------------------------------------------------------- stats

function newStats() {
  return {
    started_at: new Date().toISOString(),
    total: 0,
    kinds: {},
    routes: {},
    statuses: {},
    dbs: {},
    throttled: 0,
    status_429: 0,
    request_charge: { responses_with_header: 0, total: 0 },
    recent: [],
  };
}

const RECENT_MAX = 200;
let stats = newStats();

function bump(obj, key) {
  obj[key] = (obj[key] || 0) + 1;
}

function record(info, req, status, charge, throttled) {
  stats.total += 1;
  bump(stats.kinds, info.kind);
  bump(stats.routes, info.route);
  bump(stats.statuses, String(status));
  if (info.db !== null) {
    if (!stats.dbs[info.db]) stats.dbs[info.db] = {};
    bump(stats.dbs[info.db], info.kind);
  }
  if (status === 429) stats.status_429 += 1;
  if (throttled) stats.throttled += 1;
  if (charge !== undefined && charge !== null && charge !== "") {
    const n = Number(charge);
    stats.request_charge.responses_with_header += 1;
    if (Number.isFinite(n)) stats.request_charge.total += n;
  }
  stats.recent.push({
    method: req.method,
    path: normalisePath(req.url),
    kind: info.kind,
    status,
    partition_key: req.headers["x-ms-documentdb-partitionkey"] || null,
    throttled: Boolean(throttled),
  });
  if (stats.recent.length > RECENT_MAX) stats.recent.shift();
}

// ---------------------------------------------------------- fault state

// Pending throttle: { remaining, retryAfterMs, kinds: Set|null }
let throttle = { remaining: 0, retryAfterMs: 0, kinds: null };

function takeThrottle(info) {
  if (throttle.remaining <= 0 || !info.isDocs) return null;
  if (throttle.kinds && !throttle.kinds.has(info.kind)) return null;
  throttle.remaining -= 1;
  return throttle.retryAfterMs;
}

// --------------------------------------------------------- response rewriting

const NOT_FOUND = {
  code: "NotFound",
  message: "Entity with the specified id does not exist in the system.",
};

// Captures the single res.end(body) the package makes, lets `rewrite` change
// status/body/headers, then sends. The package never streams or writes early.
function interceptEnd(res, rewrite) {
  const origEnd = res.end;
  res.end = function end(chunk, encoding, cb) {
    res.end = origEnd;
    if (typeof chunk === "function") {
      cb = chunk;
      chunk = undefined;
    }
    let text = chunk === undefined || chunk === null ? "" : Buffer.isBuffer(chunk) ? chunk.toString("utf8") : String(chunk);
    try {
      const out = rewrite(res.statusCode, text);
      if (out) {
        res.statusCode = out.status;
        text = out.text;
      }
    } catch (err) {
      log(`rewrite failed (sent unchanged): ${err && err.stack ? err.stack : err}`);
    }
    return origEnd.call(res, text, typeof encoding === "string" ? encoding : "utf8", cb);
  };
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (_) {
    return undefined;
  }
}

function hasPartitionKey(req) {
  const pk = req.headers["x-ms-documentdb-partitionkey"];
  return pk !== undefined && pk !== "" && pk !== "[{}]";
}

// ------------------------------------------------------------------- main

// The package console.error()s the stack of every handler crash. The crash
// behind quirk 3 is expected and rewritten to a 404, so log one line instead.
function quietExpectedCrashes() {
  const orig = console.error;
  console.error = (...args) => {
    const e = args[0];
    if (
      args.length === 1 &&
      e instanceof TypeError &&
      e.message.startsWith("Cannot read properties of undefined") &&
      /cosmosdb-server[\\/]lib[\\/](handler|account)[\\/]/.test(String(e.stack))
    ) {
      info(`server handler crash (a missing database/collection/document): ${e.message}`);
      return;
    }
    orig.apply(console, args);
  };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const plainHttp = opts.http;
  quiet = opts.quiet;
  quietExpectedCrashes();
  const dataServer = plainHttp ? cosmos.createHttpServer() : cosmos.createHttpsServer();

  // The package creates its (in-memory) account in a 'listening' handler. A
  // second listen() after /fault/down would replace the account and lose all
  // data, so those handlers are removed after the first 'listening'.
  const packageListeningHandlers = dataServer.listeners("listening");
  const [packageHandler, ...extraHandlers] = dataServer.listeners("request");
  if (typeof packageHandler !== "function" || extraHandlers.length) {
    fail("unexpected @vercel/cosmosdb-server internals (expected exactly one 'request' listener)");
  }
  dataServer.removeAllListeners("request");

  let dataPort = opts.port;
  let dataUp = false;
  const sockets = new Set();
  dataServer.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  dataServer.on("request", (req, res) => {
    const path = normalisePath(req.url);
    const info = classify(req, path);

    // Fault: throttle document operations.
    const retryAfter = takeThrottle(info);
    if (retryAfter !== null) {
      req.resume(); // drain any body
      const body = JSON.stringify({ code: "TooManyRequests", message: "Request rate is large" });
      res.writeHead(429, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        "x-ms-retry-after-ms": String(retryAfter),
        "x-ms-substatus": "3200",
        "x-ms-activity-id": crypto.randomUUID(),
        connection: "close",
      });
      res.end(body);
      record(info, req, 429, undefined, true);
      return;
    }

    // Quirk 1: per-range fan-out query (range id, no partition key) must be
    // allowed to run cross-partition.
    if (isQuery(req) && req.headers["x-ms-documentdb-partitionkeyrangeid"] !== undefined && !hasPartitionKey(req)) {
      req.headers["x-ms-documentdb-query-enablecrosspartition"] = "true";
    }

    // Quirk 4 (also applied to content-location): in plain-HTTP mode the
    // package still advertises https:// endpoints.
    if (plainHttp) {
      const origSetHeader = res.setHeader;
      res.setHeader = function setHeader(name, value) {
        if (String(name).toLowerCase() === "content-location" && typeof value === "string") {
          value = value.replace(/^https:\/\//, "http://");
        }
        return origSetHeader.call(this, name, value);
      };
    }

    interceptEnd(res, (status, text) => {
      let out = null;
      // Quirk 4: account metadata locations.
      if (plainHttp && info.kind === "meta" && status === 200) {
        const body = parseJson(text);
        if (body) {
          const hostPort = req.headers.host || `${opts.host}:${dataPort}`;
          for (const key of ["writableLocations", "readableLocations"]) {
            for (const loc of body[key] || []) {
              if (typeof loc.databaseAccountEndpoint === "string") {
                loc.databaseAccountEndpoint = `http://${hostPort}/`;
              }
            }
          }
          out = { status, text: JSON.stringify(body) };
        }
      }
      // Quirk 2: partition key range ids must be strings.
      if (info.kind === "pkranges" && status === 200) {
        const body = parseJson(text);
        if (body && Array.isArray(body.PartitionKeyRanges)) {
          for (const r of body.PartitionKeyRanges) {
            if (typeof r.id === "number") r.id = String(r.id);
          }
          out = { status, text: JSON.stringify(body) };
        }
      }
      // Quirk 3: GET of a missing document crashes the handler (500,
      // "Cannot read properties of undefined"); real Cosmos answers 404.
      // The same crash happens for a document operation on a collection that
      // does not exist (e.g. create), which real Cosmos also answers with 404.
      if (info.isDocs && status === 500) {
        const body = parseJson(text);
        if (body && typeof body.message === "string" && body.message.startsWith("Cannot read properties of undefined")) {
          out = { status: 404, text: JSON.stringify(NOT_FOUND) };
        }
      }
      // Replace/delete/patch of a missing document answer 404 with body
      // {"message":""}; give them the NotFound code real Cosmos sends.
      if (info.isDocs && status === 404) {
        const body = parseJson(text);
        if (!body || !body.code) out = { status: 404, text: JSON.stringify(NOT_FOUND) };
      }
      return out;
    });

    res.on("finish", () => record(info, req, res.statusCode, res.getHeader("x-ms-request-charge"), false));
    packageHandler.call(dataServer, req, res);
  });

  function listenData() {
    return new Promise((resolve, reject) => {
      const onError = (err) => {
        dataServer.removeListener("listening", onListening);
        reject(err);
      };
      const onListening = () => {
        dataServer.removeListener("error", onError);
        dataPort = dataServer.address().port;
        dataUp = true;
        for (const h of packageListeningHandlers) dataServer.removeListener("listening", h);
        resolve(dataPort);
      };
      dataServer.once("error", onError);
      dataServer.once("listening", onListening);
      dataServer.listen(dataPort, opts.host);
    });
  }

  function closeData() {
    return new Promise((resolve) => {
      if (!dataUp) {
        resolve();
        return;
      }
      dataUp = false;
      dataServer.close(() => resolve());
      for (const s of sockets) s.destroy();
      sockets.clear();
    });
  }

  // ------------------------------------------------------------ control API
  let controlServer = null;
  const controlSockets = new Set();

  function sendJson(res, status, obj) {
    const body = `${JSON.stringify(obj, null, 2)}\n`;
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  function readBody(req) {
    return new Promise((resolve, reject) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      req.on("error", reject);
    });
  }

  function state() {
    return {
      data_up: dataUp,
      data_port: dataPort,
      scheme: plainHttp ? "http" : "https",
      throttle_pending: throttle.remaining,
    };
  }

  async function handleControl(req, res) {
    const path = normalisePath(req.url);
    const route = `${req.method} ${path}`;
    const text = await readBody(req);
    switch (route) {
      case "GET /":
      case "GET /state":
        return sendJson(res, 200, state());
      case "GET /stats":
        return sendJson(res, 200, { ...stats, throttle_pending: throttle.remaining, data_up: dataUp });
      case "POST /stats/reset":
        stats = newStats();
        return sendJson(res, 200, { ok: true });
      case "POST /fault/throttle": {
        const body = text.trim() ? parseJson(text) : {};
        if (!body || typeof body !== "object") return sendJson(res, 400, { error: "body must be a JSON object" });
        const count = body.count === undefined ? 1 : body.count;
        const ms = body.retry_after_ms === undefined ? 100 : body.retry_after_ms;
        if (!Number.isInteger(count) || count < 0) return sendJson(res, 400, { error: "count must be an integer >= 0" });
        if (!Number.isInteger(ms) || ms < 0) return sendJson(res, 400, { error: "retry_after_ms must be an integer >= 0" });
        let kinds = null;
        if (body.kinds !== undefined && body.kinds !== null) {
          if (!Array.isArray(body.kinds) || body.kinds.some((k) => typeof k !== "string")) {
            return sendJson(res, 400, { error: "kinds must be an array of strings" });
          }
          kinds = new Set(body.kinds);
        }
        throttle = { remaining: count, retryAfterMs: ms, kinds };
        return sendJson(res, 200, { throttle_pending: count, retry_after_ms: ms, kinds: kinds ? [...kinds] : null });
      }
      case "POST /fault/down":
        await closeData();
        return sendJson(res, 200, state());
      case "POST /fault/up":
        if (!dataUp) {
          try {
            await listenData();
          } catch (err) {
            return sendJson(res, 500, { error: `re-listen on port ${dataPort} failed: ${err.message}`, ...state() });
          }
        }
        return sendJson(res, 200, state());
      default:
        return sendJson(res, 404, { error: `no control route ${route}` });
    }
  }

  // ------------------------------------------------------------ lifecycle
  let stopping = false;
  function shutdown(reason) {
    if (stopping) return;
    stopping = true;
    info(`stopping (${reason})`);
    const done = () => process.exit(0);
    setTimeout(done, 2000).unref();
    Promise.all([
      closeData(),
      new Promise((resolve) => {
        if (!controlServer || !controlServer.listening) return resolve();
        controlServer.close(() => resolve());
        for (const s of controlSockets) s.destroy();
        return undefined;
      }),
    ]).then(done, done);
  }
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  if (opts.stdinEof) {
    process.stdin.on("end", () => shutdown("stdin closed"));
    process.stdin.on("error", () => shutdown("stdin error"));
    process.stdin.resume();
  }

  (async () => {
    if (opts.controlPort !== null) {
      controlServer = http.createServer((req, res) => {
        handleControl(req, res).catch((err) => {
          log(`control error: ${err && err.stack ? err.stack : err}`);
          if (!res.headersSent) sendJson(res, 500, { error: String(err && err.message) });
        });
      });
      controlServer.on("connection", (s) => {
        controlSockets.add(s);
        s.on("close", () => controlSockets.delete(s));
      });
      await new Promise((resolve, reject) => {
        controlServer.once("error", reject);
        controlServer.listen(opts.controlPort, opts.host, resolve);
      });
      process.stdout.write(`control ${controlServer.address().port}\n`);
    }
    const port = await listenData();
    info(`listening on ${plainHttp ? "http" : "https"}://${opts.host}:${port}/`);
    process.stdout.write(`ready ${port}\n`);
  })().catch((err) => {
    log(`startup failed: ${err && err.message}`);
    process.exit(1);
  });
}

main();
