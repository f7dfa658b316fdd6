#!/usr/bin/env python3
"""CPU per request by component, from the `perf record -g -e cpu-clock` files of scripts/profile.sh.

Usage: perf-categories.py OUT_DIR SAMPLE_SECONDS TARGET...
Reads OUT_DIR/<target>.<phase>.data (perf) and OUT_DIR/<target>.<phase>.oha.json (oha's report of each phase);
prints a Markdown summary: per target and phase, req/s, CPU µs per request in all, by thread,
and by component. A sample goes to the first component (in the order of COMPONENTS) that any
frame of its stack belongs to, so a store's page I/O in the kernel counts as the store's, and a
malloc called from JSON decoding counts as JSON.
"""

import collections
import json
import re
import subprocess
import sys

FREQUENCY = 2999  # perf record -F, as in scripts/profile.sh

# (component, predicate over one stack: list of (symbol, dso) innermost first)
NET = re.compile(r"tcp_|sock|inet|ip_|netif|loopback|epoll|net_rx|skb|__sys_sendto|recvfrom|sendmsg|writev|readv")


def any_frame(pattern):
    regex = re.compile(pattern)
    return lambda stack: any(regex.search(sym) for sym, _ in stack)


def kernel_leaf_matching(regex):
    return lambda stack: bool(stack) and "kernel" in stack[0][1] and any(
        regex.search(sym) for sym, dso in stack if "kernel" in dso
    )


COMPONENTS = [
    ("store: redb (B-tree, pages, its file I/O)", any_frame(r"\bredb::")),
    ("store: fjall (LSM tree: memtable, segments, flush, compaction)", any_frame(r"\bfjall::|\blsm_tree::|\bvalue_log::|crossbeam_skiplist")),
    ("store: journal, writer thread", any_frame(r"handler::store::")),
    ("kernel: loopback TCP, epoll", kernel_leaf_matching(NET)),
    ("tracing (spans, log lines)", any_frame(r"\btracing(_subscriber|_core|_appender)?::")),
    ("metrics (prometheus-client)", any_frame(r"prometheus_client::|handler::metrics::")),
    ("JSON (serde)", any_frame(r"\bserde(_json)?::")),
    ("auth (API key check)", any_frame(r"handler::auth::")),
    ("application code (routes, validation, middleware)", any_frame(r"\bhandler::|\bfloor::")),
    ("HTTP stack (hyper, axum, tower)", any_frame(r"\bhyper::|\baxum(_core)?::|\btower(_http|_service)?::|\bhttp::|httparse|matchit")),
    ("tokio runtime (scheduling, timers, wakeups)", any_frame(r"\btokio::")),
    ("kernel: other (scheduler, futex, fs)", lambda stack: bool(stack) and "kernel" in stack[0][1]),
    ("other (malloc, libc, unresolved)", lambda stack: True),
]


def samples(path):
    """Yields (thread name, stack) per sample."""
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,ip,sym,dso"],
        capture_output=True, text=True, check=False,
    ).stdout
    comm, stack = None, []
    for line in out.splitlines():
        if not line.strip():
            if comm is not None:
                yield comm, stack
            comm, stack = None, []
        elif not line.startswith((" ", "\t")):
            comm = line.strip().split()[0] if line.strip() else "?"
        else:
            parts = line.strip().split(None, 1)
            rest = parts[1] if len(parts) > 1 else ""
            match = re.match(r"(.*) \((.*)\)$", rest)
            sym, dso = (match.group(1), match.group(2)) if match else (rest, "")
            stack.append((sym, dso))
    if comm is not None:
        yield comm, stack


def phase_rps(oha_file):
    try:
        with open(oha_file) as f:
            return json.load(f)["summary"]["requestsPerSec"]
    except (OSError, ValueError, KeyError):
        return None


def main():
    out, seconds, targets = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    print(f"CPU per request (perf cpu-clock samples at {FREQUENCY} Hz over {seconds:.0f} s of each phase; "
          "the server pinned to one core, so its CPU per request bounds its req/s)\n")
    for phase in ("post", "get"):
        rows = {}
        for target in targets:
            rps = phase_rps(f"{out}/{target}.{phase}.oha.json")
            by_component = collections.Counter()
            by_thread = collections.Counter()
            total = 0
            for comm, stack in samples(f"{out}/{target}.{phase}.data"):
                total += 1
                by_thread[comm] += 1
                for name, matches in COMPONENTS:
                    if matches(stack):
                        by_component[name] += 1
                        break
            if not rps or not total:
                continue
            per_request = lambda n: n / FREQUENCY / (rps * seconds) * 1e6
            rows[target] = (rps, per_request(total), {k: per_request(v) for k, v in by_component.items()},
                            {k: per_request(v) for k, v in by_thread.most_common(6)})
        if not rows:
            continue
        print(f"### {phase.upper()} /records")
        print("| component | " + " | ".join(rows) + " |")
        print("|---|" + "---:|" * len(rows))
        print("| req/s | " + " | ".join(f"{r[0]:,.0f}" for r in rows.values()) + " |")
        print("| **CPU µs per request** | " + " | ".join(f"**{r[1]:.1f}**" for r in rows.values()) + " |")
        for name, _ in COMPONENTS:
            cells = [f"{r[2].get(name, 0):.1f}" for r in rows.values()]
            if any(c != "0.0" for c in cells):
                print(f"| {name} | " + " | ".join(cells) + " |")
        print()
        for target, r in rows.items():
            threads = ", ".join(f"{k} {v:.1f}" for k, v in r[3].items())
            print(f"{target} by thread (µs per request): {threads}")
        print()


if __name__ == "__main__":
    main()
