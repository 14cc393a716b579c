#!/usr/bin/env bash
# Runs the in-process benchmarks (the main crate's `etag` and `response_cache`, then the
# peers in `bench-peers`) and prints Markdown tables of the medians and the ratios between
# them, all from this one run.
#
#   benches/run.sh                 # build, run, report (about 10 minutes on 2 cores)
#   REPORT_ONLY=1 benches/run.sh   # only the tables, from the last run's results
#   ONLY='^etag_304' benches/run.sh # re-run the matching groups, then report everything
#   benches/run.sh --quick         # extra arguments go to every criterion binary
#
# Honours CARGO_TARGET_DIR (default ./target); criterion writes to $CARGO_TARGET_DIR/criterion.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
CRITERION_DIR="$CARGO_TARGET_DIR/criterion"

if [ -n "${ONLY:-}" ]; then
    # Re-run only the groups matching the regex $ONLY (both bench sets), keep the rest.
    cargo bench --bench etag --bench response_cache -- --noplot "$ONLY" "$@"
    cargo bench -p bench-peers --bench peers -- --noplot "$ONLY" "$@"
elif [ "${REPORT_ONLY:-0}" != 1 ]; then
    cargo bench --bench etag --bench response_cache -- --noplot "$@"
    cargo bench -p bench-peers --bench peers -- --noplot "$@"
fi

python3 - "$CRITERION_DIR" <<'PY'
import json, os, sys

root = sys.argv[1]
rows = {}  # (group, param) -> {function: (median_ns, throughput)}
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        meta = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    # `BenchmarkId::from_parameter(name)` has no function id: the name is the value.
    func, param = meta.get("function_id"), meta.get("value_str") or ""
    if not func:
        func, param = param, ""
    key = (meta["group_id"], param)
    rows.setdefault(key, {})[func] = (
        est["median"]["point_estimate"],
        meta.get("throughput"),
    )

if not rows:
    sys.exit(f"no criterion results under {root}")

def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"

def fmt_tput(ns, tp):
    if not tp:
        return ""
    if "Bytes" in tp:
        return f"{tp['Bytes'] / ns * 1e9 / 2**30:.3g} GiB/s"
    if "Elements" in tp:
        return f"{tp['Elements'] / ns * 1e9 / 1e6:.3g} M req/s"
    return ""

def is_base(name):
    return name.startswith("bare") or name == "blake3"

print("## Medians\n")
print("| group | param | benchmark | median | throughput |")
print("|---|---|---|---:|---:|")
for (group, param) in sorted(rows):
    funcs = rows[(group, param)]
    order = sorted(funcs, key=lambda n: (not is_base(n), n != "ours", n))
    for name in order:
        ns, tp = funcs[name]
        print(f"| {group} | {param} | {name} | {fmt_time(ns)} | {fmt_tput(ns, tp)} |")

print("\n## Ratios (time ratios of medians; < 1 is faster)\n")
print("| group | param | ours / bare | peer | peer / its bare | peer / ours (ours is N× faster) |")
print("|---|---|---:|---|---:|---:|")
for (group, param) in sorted(rows):
    funcs = rows[(group, param)]
    if "ours" not in funcs:
        continue
    ours = funcs["ours"][0]
    bare = funcs.get("bare", (None,))[0]
    ob = f"{ours / bare:.2f}" if bare else ""
    peers = [n for n in funcs if not is_base(n) and n != "ours"]
    if not peers:
        print(f"| {group} | {param} | {ob} | | | |")
    for p in sorted(peers):
        pt = funcs[p][0]
        own_bare = "bare-http02" if "tower-etag-cache" in p else "bare-peers"
        pb = funcs.get(own_bare, (None,))[0]
        pbs = f"{pt / pb:.2f}" if pb else ""
        print(f"| {group} | {param} | {ob} | {p} | {pbs} | {pt / ours:.2f} |")

print("\n## Targets\n")
print("| target | measured | met |")
print("|---|---:|:---:|")

def get(group, name, param=""):
    return rows.get((group, param), {}).get(name, (None,))[0]

def target(label, value, ok, fmt="{:.2f}"):
    if value is None:
        print(f"| {label} | n/a | ? |")
    else:
        print(f"| {label} | {fmt.format(value)} | {'yes' if ok(value) else 'NO'} |")

o, b, p = get("etag_304_hit", "ours"), get("etag_304_hit", "bare"), get("etag_304_hit", "tower-etag-cache-0.1")
target("304 hit: throughput ≥ 3× tower-etag-cache 0.1 (peer time / ours)", p / o if o and p else None, lambda v: v >= 3)
target("304 hit: cost ≤ 1.2× the bare service (ours / bare)", o / b if o and b else None, lambda v: v <= 1.2)
o, b = get("etag_miss_1k", "ours"), get("etag_miss_1k", "bare")
target("miss 1 KiB: ≤ 1.10× the bare service (ours / bare)", o / b if o and b else None, lambda v: v <= 1.10)
h = get("etag_miss_1k", "blake3")
if h and b:
    print(f"| (for reference) miss 1 KiB floor: (bare + blake3 of 1 KiB) / bare | {(b + h) / b:.2f} | |")
for size in ("1MiB", "64MiB"):
    o, r = get("etag_hash", "ours", size), get("etag_hash", "blake3", size)
    target(f"hash {size}: ≥ 90 % of raw blake3 throughput (blake3 time / ours)", r / o if o and r else None, lambda v: v >= 0.9, "{:.1%}")
PY
