#!/usr/bin/env bash
# Instructions per request (callgrind), repeatable on a noisy machine: each scenario of
# bench-ir (bench-ir/src/main.rs) runs under valgrind with N and 5N requests; the difference in instructions
# divided by 4N is the cost of one request, without set-up.
#
#   benches/ir.sh                    # every scenario, N=2000
#   N=1000 benches/ir.sh rc_hit_1k   # some scenarios
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
N="${N:-2000}"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(bare etag_304 etag_miss_1k etag_invalidate rc_hit_1k rc_304 rc_miss_1k)

# IR_BIN: a bench-ir binary built already (benches/budget.sh builds it with the proxy).
bin="${IR_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release -p bench-ir --quiet
    bin="$CARGO_TARGET_DIR/release/bench-ir"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ir() { # scenario requests -> total Ir
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" "$1" "$2" >/dev/null 2>"$out/log"
    grep -m1 -E '^summary:' "$out/cg" | awk '{print $2}'
}
printf '| scenario | Ir per request |\n|---|---:|\n'
for s in "${scenarios[@]}"; do
    a=$(ir "$s" "$N")
    b=$(ir "$s" $((5 * N)))
    printf '| %s | %d |\n' "$s" $(( (b - a) / (4 * N) ))
done
