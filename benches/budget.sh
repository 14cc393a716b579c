#!/usr/bin/env bash
# The instruction budget: counts the user-space instructions per request (callgrind Ir) of
# each scenario in benches/ir-budget.txt and fails when one costs more than 3 % above its
# ceiling. Counts are deterministic to about 1 %: unlike a timing, they hold on two shared
# cores.
#
#   benches/budget.sh            # check every scenario against its ceiling
#   benches/budget.sh --print    # only print the counts (what to write as ceilings)
#
# In-process scenarios are those of bench-ir (through benches/ir.sh); `proxy_hit` is the
# `tower-etag-proxy` binary serving a 1 KiB hit to a keep-alive client over loopback, hyper and tokio
# included: Ir per hit = (Ir after N2 hits - Ir after N1 hits) / (N2 - N1), so start-up and
# the first (filling) request cancel out. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
budget=benches/ir-budget.txt
tolerance=3   # percent
print_only=0
[ "${1:-}" = "--print" ] && print_only=1

# A failed build stops here: a binary left from an earlier build must not be measured.
# One cargo invocation, so both binaries share one build of the library and its
# dependencies (and none of the benchmarks' dev-dependencies).
cargo build --release -p tower-etag -p bench-ir --features tower-etag/proxy --bins --quiet
proxy="$CARGO_TARGET_DIR/release/tower-etag-proxy"
[ -x "$proxy" ] || { echo "no proxy binary at $proxy" >&2; exit 1; }

run=$(mktemp -d)
origin_pid=
cleanup() {
    if [ -n "$origin_pid" ]; then
        kill "$origin_pid" 2>/dev/null
        wait "$origin_pid" 2>/dev/null || true
    fi
    rm -rf "$run"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Total Ir of the proxy serving `$1` hits.
proxy_total() {
    local port out vg
    port=$(free_port)
    out="$run/proxy.$1.cg"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$proxy" --upstream "http://127.0.0.1:$origin_port" --listen "127.0.0.1:$port" \
        >"$run/proxy.log" 2>&1 &
    vg=$!
    if ! python3 benches/ir_peer.py client "$port" "$1" >&2; then
        kill "$vg" 2>/dev/null
        echo "proxy_hit: the proxy did not answer as expected; its log:" >&2
        cat "$run/proxy.log" >&2
        exit 1
    fi
    kill -TERM "$vg"
    wait "$vg" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

# The origin, for `proxy_hit`: started here, not inside a `$(...)`, whose output it would
# hold open.
origin_port=$(free_port)
python3 benches/ir_peer.py origin "$origin_port" >/dev/null 2>&1 &
origin_pid=$!

measure() {
    case "$1" in
    proxy_hit)
        local a b
        a=$(proxy_total 300)
        b=$(proxy_total 1300)
        echo $(((b - a) / 1000))
        ;;
    *)
        IR_BIN="$CARGO_TARGET_DIR/release/bench-ir" N="${N:-1000}" benches/ir.sh "$1" | awk -F'|' -v s="$1" '$2 ~ " "s" " {gsub(/ /, "", $3); print $3}'
        ;;
    esac
}

failed=0
printf '%-12s %10s %10s %8s\n' scenario "Ir/request" ceiling change
while read -r scenario ceiling _; do
    case "$scenario" in '' | '#'*) continue ;; esac
    got=$(measure "$scenario")
    [ -n "$got" ] || { echo "$scenario: no count" >&2; exit 1; }
    change=$(python3 -c "print(f'{($got / $ceiling - 1) * 100:+.1f}%' if $ceiling else 'n/a')")
    printf '%-12s %10d %10d %8s\n' "$scenario" "$got" "$ceiling" "$change"
    if [ "$print_only" = 0 ] && [ "$got" -gt $((ceiling * (100 + tolerance) / 100)) ]; then
        echo "  over budget: $scenario costs $got instructions per request, more than $tolerance % above its ceiling of $ceiling (benches/ir-budget.txt)" >&2
        failed=1
    fi
done <"$budget"
exit "$failed"
