#!/usr/bin/env bash
# The loopback load, memory and coalescing harness of tower-etag (issue 4, part B).
#
#   bench-load/run.sh                 # from anywhere; about 4 minutes with the defaults
#
# What it does, all on 127.0.0.1, every step bounded in time, stopping by itself:
#   1. installs wrk, nginx, varnish and GNU time with apt-get when they are missing;
#   2. builds the bench-load binaries in release mode (honours CARGO_TARGET_DIR);
#   3. starts the bare origin, the ETag server, the in-process response cache, our caching
#      proxy (tower_etag::proxy), the same proxy without cache, a tower-http-cache 0.6
#      proxy, nginx (proxy_cache, bench-load/nginx.conf) and Varnish (bench-load/default.vcl),
#      warms every cache, and runs `wrk --latency` against each for DURATION;
#   4. runs the memory (1 GiB body, 100 000 keys) and coalescing (1 000 concurrent cold
#      requests) binaries under /usr/bin/time -v;
#   5. prints Markdown tables (also written to $OUT/report.md) and stops everything it
#      started (trap EXIT). It never touches /etc/nginx or /etc/varnish.
#
# Settings (environment):
#   DURATION=10s THREADS=2 CONNECTIONS=32   wrk per target
#   ROUNDS=1          run every target ROUNDS times, interleaved; the median run is reported
#   PORT_BASE=18400   ports PORT_BASE+1 .. PORT_BASE+8 on 127.0.0.1 must be free
#   CARGO_TARGET_DIR  where cargo builds (default ./target)
#   OUT               where logs and report.md go (default a fresh temp dir, kept)
#   SKIP_LOAD=1 SKIP_MEMORY=1 SKIP_COALESCE=1   leave a part out
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/bench-load
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-1}
PORT_BASE=${PORT_BASE:-18400}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/release
OUT=${OUT:-$(mktemp -d /tmp/bench-load.XXXXXX)}
mkdir -p "$OUT"
RUN=$(mktemp -d /tmp/bench-load-run.XXXXXX) # nginx prefix, varnish workdir
chmod 755 "$RUN"
REPORT=$OUT/report.md
: >"$REPORT"

# shellcheck source=bench-load/common.sh
. "$HERE/common.sh"

# ---------------------------------------------------------------- 1. tools
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v varnishd >/dev/null || need+=(varnish)
[ -x /usr/bin/time ] || need+=(time)
command -v cc >/dev/null || need+=(gcc libc6-dev) # varnishd compiles its VCL with cc
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root"
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >"$OUT/apt.log" 2>&1 ||
        die "apt-get install ${need[*]} failed (see $OUT/apt.log)"
fi
command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs)"
# 1 000 concurrent connections, both ends in one process for the coalescing run.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] ||
    die "ulimit -n is $(ulimit -n); the coalescing run needs at least 4096 file descriptors"

# ---------------------------------------------------------------- 2. build
say "building bench-load (release) into $TARGET_DIR"
(cd "$ROOT" && cargo build --release -p bench-load --quiet) || die "cargo build failed"

# ---------------------------------------------------------------- machine
out "# tower-etag loopback load, memory and coalescing run"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
out "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -r)"
out "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
out "- tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), $(varnishd -V 2>&1 | head -1 | cut -d' ' -f2 | tr -d '('), $(rustc --version | cut -d' ' -f1-2)"
out "- wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency per target, $ROUNDS round(s); body 1 KiB"
out ""

# ---------------------------------------------------------------- 3. servers
P_ORIGIN=$((PORT_BASE + 1))
P_ETAG=$((PORT_BASE + 2))
P_RC=$((PORT_BASE + 3))
P_PROXY=$((PORT_BASE + 4))
P_FORWARD=$((PORT_BASE + 5))
P_THC=$((PORT_BASE + 6))
P_NGINX=$((PORT_BASE + 7))
P_VARNISH=$((PORT_BASE + 8))
for p in $P_ORIGIN $P_ETAG $P_RC $P_PROXY $P_FORWARD $P_THC $P_NGINX $P_VARNISH; do
    port_free "$p" || die "127.0.0.1:$p is taken; set PORT_BASE to a free range (ports PORT_BASE+1..+8)"
done
ORIGIN=http://127.0.0.1:$P_ORIGIN

start origin "$BIN/origin" --listen "127.0.0.1:$P_ORIGIN"
start etag_server "$BIN/etag_server" --listen "127.0.0.1:$P_ETAG"
start rc_server "$BIN/rc_server" --listen "127.0.0.1:$P_RC"
start proxy "$BIN/proxy" --listen "127.0.0.1:$P_PROXY" --upstream "$ORIGIN"
start forward "$BIN/proxy" --listen "127.0.0.1:$P_FORWARD" --upstream "$ORIGIN" --no-cache
start thc_proxy "$BIN/thc_proxy" --listen "127.0.0.1:$P_THC" --upstream "$ORIGIN"

mkdir -p "$RUN/nginx" "$RUN/nginx/cache"
sed -e "s#@PREFIX@#$RUN/nginx#g" -e "s/@ORIGIN_PORT@/$P_ORIGIN/g" -e "s/@NGINX_PORT@/$P_NGINX/g" \
    "$HERE/nginx.conf" >"$RUN/nginx/nginx.conf"
[ "$(id -u)" = 0 ] || sed -i '/^user root;/d' "$RUN/nginx/nginx.conf"
start nginx nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/error.log" -g 'daemon off;'

sed -e "s/@ORIGIN_PORT@/$P_ORIGIN/g" "$HERE/default.vcl" >"$RUN/default.vcl"
chmod 644 "$RUN/default.vcl"
start varnish varnishd -F -a "127.0.0.1:$P_VARNISH" -f "$RUN/default.vcl" -s malloc,256m \
    -n "$RUN/varnish" -T none

for p in $P_ORIGIN $P_ETAG $P_RC $P_PROXY $P_FORWARD $P_THC $P_NGINX $P_VARNISH; do
    wait_http "http://127.0.0.1:$p/cached" ||
        die "nothing answers on 127.0.0.1:$p (logs in $OUT; nginx: $RUN/nginx/error.log)"
done

# Warm every cache, and learn the ETag the ETag layer gives /etag.
for p in $P_ETAG $P_RC $P_PROXY $P_THC $P_NGINX $P_VARNISH; do
    for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$p/cached"; done
done
ETAG=$(curl -s -D - -o /dev/null "http://127.0.0.1:$P_ETAG/etag" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag" {print $2}')
[ -n "$ETAG" ] || die "the ETag server sent no ETag for /etag"
CACHED_ETAG='"cached-v1"'

# ---------------------------------------------------------------- load targets
# name | port | path | If-None-Match ("" for none) | group
TARGETS=(
    "bare axum handler, 200|$P_ORIGIN|/cached||hit"
    "tower-etag ResponseCache in process, hit|$P_RC|/cached||hit"
    "tower-etag proxy, hit|$P_PROXY|/cached||hit"
    "nginx proxy_cache, hit|$P_NGINX|/cached||hit"
    "Varnish, hit|$P_VARNISH|/cached||hit"
    "tower-http-cache 0.6 proxy, hit|$P_THC|/cached||hit"
    "same proxy, no cache (every request to origin)|$P_FORWARD|/cached||hit"
    "bare axum handler /etag, 200 (no ETag)|$P_ORIGIN|/etag||304"
    "ETag layer /etag: handler runs, body hashed, 304|$P_ETAG|/etag|$ETAG|304"
    "ETag layer /cached: 304 from the fresh entry|$P_ETAG|/cached|$CACHED_ETAG|304"
    "tower-etag ResponseCache in process, 304|$P_RC|/cached|$CACHED_ETAG|304"
    "tower-etag proxy, 304|$P_PROXY|/cached|$CACHED_ETAG|304"
    "nginx proxy_cache, 304|$P_NGINX|/cached|$CACHED_ETAG|304"
    "Varnish, 304|$P_VARNISH|/cached|$CACHED_ETAG|304"
    "tower-http-cache 0.6 proxy, If-None-Match|$P_THC|/cached|$CACHED_ETAG|304"
)

to_ms() { # wrk's "1.23ms" / "456.00us" / "1.02s" -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

run_wrk() { # run_wrk INDEX ROUND -> appends "index|rps|p50|p99|status|errors" to $OUT/wrk.txt
    local i=$1 round=$2 name port path inm group log status hdr=()
    IFS='|' read -r name port path inm group <<<"${TARGETS[$i]}"
    [ -n "$inm" ] && hdr=(-H "If-None-Match: $inm")
    status=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" "http://127.0.0.1:$port$path")
    log=$OUT/wrk-$i-$round.log
    say "  wrk: $name"
    timeout 120 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${hdr[@]}" \
        "http://127.0.0.1:$port$path" >"$log" 2>&1 || say "  (wrk failed: $log)"
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$log")
    p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$log")")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$log")")
    errors=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {n += 1} END {print n + 0}' "$log")
    echo "$i|${rps:-0}|$p50|$p99|$status|$errors" >>"$OUT/wrk.txt"
}

median_row() { # median_row INDEX -> the row of the median run (by requests/s)
    awk -F'|' -v i="$1" '$1==i' "$OUT/wrk.txt" | sort -t'|' -k2,2g |
        awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)'
}

if [ -z "${SKIP_LOAD:-}" ]; then
    say "load: ${#TARGETS[@]} targets x $ROUNDS round(s) x $DURATION"
    : >"$OUT/wrk.txt"
    for round in $(seq "$ROUNDS"); do
        for i in "${!TARGETS[@]}"; do run_wrk "$i" "$round"; done
    done
    declare -A RPS
    for i in "${!TARGETS[@]}"; do
        RPS[$i]=$(median_row "$i" | cut -d'|' -f2)
    done
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
    table() { # table GROUP REF_INDEX
        out "| target | status | requests/s | p50 ms | p99 ms | errors | ours (proxy) ÷ this |"
        out "|---|---|---:|---:|---:|---:|---:|"
        local i row name port path inm group rps p50 p99 status errors ours=$2
        for i in "${!TARGETS[@]}"; do
            IFS='|' read -r name port path inm group <<<"${TARGETS[$i]}"
            [ "$group" = "$1" ] || continue
            row=$(median_row "$i")
            IFS='|' read -r _ rps p50 p99 status errors <<<"$row"
            out "| $name | $status | $rps | $p50 | $p99 | $errors | $(ratio "${RPS[$ours]}" "$rps") |"
        done
        out ""
    }
    out "## Response-cache hit: GET /cached (1 KiB, public, max-age=3600), warm cache"
    out ""
    table hit 2
    out "## Conditional requests: If-None-Match → 304"
    out ""
    table 304 11
    out "Ratios: requests/s of our caching proxy (hit table: row 3; 304 table: 'tower-etag proxy, 304') divided by the row's."
    out "Targets: proxy hit ≥ nginx: $(ratio "${RPS[2]}" "${RPS[3]}")×, ≥ Varnish: $(ratio "${RPS[2]}" "${RPS[4]}")×, ≥ 1.5× tower-http-cache: $(ratio "${RPS[2]}" "${RPS[5]}")×; in-process cache vs tower-http-cache: $(ratio "${RPS[1]}" "${RPS[5]}")×."
    out ""
fi

# ---------------------------------------------------------------- 4. memory
peak_kib() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
kv() { tr ' ' '\n' <<<"$1" | awk -v k="$2" 'index($0, k "=") == 1 {print substr($0, length(k) + 2)}'; }

if [ -z "${SKIP_MEMORY:-}" ]; then
    say "memory: 1 GiB bodies"
    out "## Memory: a 1 GiB generated body through each layer (in process, consumed and discarded)"
    out ""
    out "| layer | length | bytes out | ETag | peak RSS KiB (time -v) | growth over no-middleware KiB |"
    out "|---|---|---:|---|---:|---:|"
    declare -A BASE
    for known in "" --known; do
        length=chunked
        [ -n "$known" ] && length=Content-Length
        for mode in none etag cache cache-1g; do
            args=(--mode "${mode%-1g}" $known)
            [ "$mode" = cache-1g ] && args+=(--store-max-bytes $((1 << 30)))
            line=$(/usr/bin/time -v "$BIN/mem_stream" "${args[@]}" 2>"$OUT/time-stream.txt") ||
                die "mem_stream ${args[*]} failed"
            echo "$line" >>"$OUT/mem_stream.txt"
            peak=$(peak_kib "$OUT/time-stream.txt")
            [ "$mode" = none ] && BASE[k$known]=$peak
            label=$mode
            case $mode in
            none) label="none (baseline)" ;;
            etag) label="EtagCacheLayer + ConstLruProvider<4096>" ;;
            cache) label="ResponseCache, MemoryStore default (128 MiB, 8 shards)" ;;
            cache-1g) label="ResponseCache, MemoryStore max_bytes 1 GiB" ;;
            esac
            out "| $label | $length | $(kv "$line" bytes) | $(kv "$line" etag) | $peak | $((peak - BASE[k$known])) |"
        done
    done
    out ""
    out "(EtagCacheLayer's growth is ConstLruProvider<4096>'s fixed table, allocated before the body starts: see peak_before_kib in $OUT/mem_stream.txt.)"
    out ""
    say "memory: 100 000 keys"
    out "## Memory: 100 000 distinct keys, MemoryStore bounded at 64 MiB"
    out ""
    out "| path | store.bytes() | store.len() | within bound | VmRSS before KiB | VmRSS after KiB | growth KiB | peak RSS KiB (time -v) |"
    out "|---|---:|---:|---|---:|---:|---:|---:|"
    for via in "--via inproc" "--via proxy" "--via proxy --copy-bodies"; do
        # shellcheck disable=SC2086
        line=$(/usr/bin/time -v "$BIN/mem_keys" $via 2>"$OUT/time-keys.txt") || die "mem_keys $via failed"
        echo "$line" >>"$OUT/mem_keys.txt"
        out "| $(kv "$line" via) | $(kv "$line" store_bytes) | $(kv "$line" store_len) | $(kv "$line" within_bound) | $(kv "$line" rss_before_kib) | $(kv "$line" rss_after_kib) | $(kv "$line" rss_growth_kib) | $(peak_kib "$OUT/time-keys.txt") |"
    done
    out ""
fi

# ---------------------------------------------------------------- 5. coalescing
if [ -z "${SKIP_COALESCE:-}" ]; then
    say "coalescing: 1 000 concurrent cold requests"
    out "## Coalescing: 1 000 concurrent requests for one cold key (origin takes 200 ms)"
    out ""
    out "| cache | origin calls | statuses | verdicts (Cache-Status / X-Cache) | p50 ms | max ms | peak RSS KiB |"
    out "|---|---:|---|---|---:|---:|---:|"
    coalesce_row() {
        local line
        line=$(timeout 120 /usr/bin/time -v "$BIN/coalesce" "$@" 2>"$OUT/time-coalesce.txt") ||
            { say "coalesce $* failed: $(tail -3 "$OUT/time-coalesce.txt")"; return 0; }
        echo "$line" >>"$OUT/coalesce.txt"
        out "| $(kv "$line" label) | $(kv "$line" origin_calls) | $(kv "$line" statuses) | $(kv "$line" verdicts | sed 's/|/\\|/g') | $(kv "$line" p50_ms) | $(kv "$line" max_ms) | $(peak_kib "$OUT/time-coalesce.txt") |"
    }
    coalesce_row --label "tower-etag-proxy-self-contained"
    for t in "tower-etag-proxy:$P_PROXY" "tower-etag-in-process:$P_RC" "nginx:$P_NGINX" \
        "varnish:$P_VARNISH" "tower-http-cache:$P_THC"; do
        key="cold-$$-$RANDOM-${t%%:*}"
        stats=$ORIGIN/stats/$key
        # The in-process cache has its own origin handlers (and counter).
        [ "${t%%:*}" = tower-etag-in-process ] && stats=http://127.0.0.1:$P_RC/stats/$key
        coalesce_row --label "${t%%:*}" --url "http://127.0.0.1:${t##*:}/slow/$key" --stats "$stats"
    done
    out ""
fi

say "done; logs and report in $OUT"
