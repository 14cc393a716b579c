#!/usr/bin/env bash
# The stores of tower-etag under loopback load (issue 9): our caching proxy on each store
# against nginx proxy_cache (both disk caches), and the Redis store against raw
# redis-benchmark on the same server.
#
#   bench-load/stores.sh            # about 3 minutes with the defaults
#
# What it does, all on 127.0.0.1, every step bounded in time, stopping by itself:
#   1. installs wrk, nginx, redis-server and curl with apt-get when they are missing;
#   2. builds the bench-load binaries in release mode (honours CARGO_TARGET_DIR);
#   3. starts the origin, redis-server (no persistence), our proxy four times (--store
#      memory, fs:DIR, redis://, redis:// with a 64 MiB memory L1) and nginx (proxy_cache on
#      disk, bench-load/nginx.conf); warms every cache;
#   4. runs wrk against each: a 1 KiB hit (ROUNDS rounds, interleaved, median reported) and
#      a 64 MiB hit (-c2); counts Redis commands per proxied hit (INFO commandstats);
#      runs redis-benchmark SET/GET with a 1 KiB value;
#   5. prints Markdown tables (also $OUT/report.md) and stops what it started.
#
# Settings: DURATION=10s THREADS=2 CONNECTIONS=32 ROUNDS=3 PORT_BASE=18500 OUT CARGO_TARGET_DIR
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/bench-load
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
PORT_BASE=${PORT_BASE:-18500}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/release
OUT=${OUT:-$(mktemp -d /tmp/bench-stores.XXXXXX)}
mkdir -p "$OUT"
RUN=$(mktemp -d /tmp/bench-stores-run.XXXXXX)
chmod 755 "$RUN"
REPORT=$OUT/report.md
: >"$REPORT"

# shellcheck source=bench-load/common.sh
. "$HERE/common.sh"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}: apt-get install ${need[*]}, or run as root"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >"$OUT/apt.log" 2>&1 ||
        die "apt-get install ${need[*]} failed (see $OUT/apt.log)"
fi

say "building bench-load (release) into $TARGET_DIR"
(cd "$ROOT" && cargo build --release -p bench-load --quiet) || die "cargo build failed"

P_ORIGIN=$((PORT_BASE + 1))
P_MEM=$((PORT_BASE + 2))
P_FS=$((PORT_BASE + 3))
P_REDIS_PROXY=$((PORT_BASE + 4))
P_L1=$((PORT_BASE + 5))
P_NGINX=$((PORT_BASE + 6))
P_REDIS=$((PORT_BASE + 7))
for p in $P_ORIGIN $P_MEM $P_FS $P_REDIS_PROXY $P_L1 $P_NGINX $P_REDIS; do
    port_free "$p" || die "127.0.0.1:$p is taken; set PORT_BASE"
done
ORIGIN=http://127.0.0.1:$P_ORIGIN
REDIS=redis://127.0.0.1:$P_REDIS

start redis redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no
for _ in $(seq 100); do redis-cli -p "$P_REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$P_REDIS" ping >/dev/null || die "redis-server did not start"

start origin "$BIN/origin" --listen "127.0.0.1:$P_ORIGIN"
wait_http "$ORIGIN/cached" || die "the origin did not start"
# Every store takes the 64 MiB body (entries up to 128 MiB; the memory store gives each of
# its 8 shards an eighth of --max-bytes, so 1 GiB).
SIZES=(--max-bytes 1073741824 --max-entry-bytes 134217728)
start proxy_memory "$BIN/proxy" --listen "127.0.0.1:$P_MEM" --upstream "$ORIGIN" \
    "${SIZES[@]}" --store memory
start proxy_fs "$BIN/proxy" --listen "127.0.0.1:$P_FS" --upstream "$ORIGIN" \
    "${SIZES[@]}" --store "fs:$RUN/fs"
start proxy_redis "$BIN/proxy" --listen "127.0.0.1:$P_REDIS_PROXY" --upstream "$ORIGIN" \
    "${SIZES[@]}" --store "$REDIS"
start proxy_redis_l1 "$BIN/proxy" --listen "127.0.0.1:$P_L1" --upstream "$ORIGIN" \
    "${SIZES[@]}" --store "$REDIS" --l1-bytes 67108864

mkdir -p "$RUN/nginx/cache"
sed -e "s#@PREFIX@#$RUN/nginx#g" -e "s/@ORIGIN_PORT@/$P_ORIGIN/g" -e "s/@NGINX_PORT@/$P_NGINX/g" \
    "$HERE/nginx.conf" >"$RUN/nginx/nginx.conf"
[ "$(id -u)" = 0 ] || sed -i '/^user root;/d' "$RUN/nginx/nginx.conf"
start nginx nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/error.log" -g 'daemon off;'

for p in $P_MEM $P_FS $P_REDIS_PROXY $P_L1 $P_NGINX; do
    wait_http "http://127.0.0.1:$p/cached" || die "nothing answers on 127.0.0.1:$p (logs in $OUT)"
done
BIG="/big?len=67108864&known=1"
for p in $P_MEM $P_FS $P_REDIS_PROXY $P_L1 $P_NGINX; do
    for _ in 1 2 3; do
        curl -s -o /dev/null "http://127.0.0.1:$p/cached"
        curl -s -o /dev/null "http://127.0.0.1:$p$BIG"
    done
done
# A "hit" row must measure hits: every cache answers both paths from its store now (the
# stores commit after the body ends, so poll a little).
is_hit() { # is_hit PORT PATH
    curl -s -o /dev/null -D - "http://127.0.0.1:$1$2" |
        grep -qiE '^(cache-status: tower-etag; hit|x-cache-status: hit)'
}
for p in $P_MEM $P_FS $P_REDIS_PROXY $P_L1 $P_NGINX; do
    for path in /cached "$BIG"; do
        for _ in $(seq 50); do is_hit "$p" "$path" && break; sleep 0.1; done
        is_hit "$p" "$path" || die "127.0.0.1:$p$path is not a hit after warming (logs in $OUT)"
    done
done

out "# tower-etag stores under loopback load"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
out "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), load at start $(cut -d' ' -f1-3 /proc/loadavg)"
out "- tools: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), redis $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
out "- wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s), median reported"
out ""

# name|port|path|connections (rows 0-4: 1 KiB hits, compared with row 2; 5-8: 64 MiB hits,
# compared with row 6)
TARGETS=(
    "proxy, MemoryStore|$P_MEM|/cached|$CONNECTIONS"
    "proxy, FsStore|$P_FS|/cached|$CONNECTIONS"
    "nginx proxy_cache (disk)|$P_NGINX|/cached|$CONNECTIONS"
    "proxy, RedisStore|$P_REDIS_PROXY|/cached|$CONNECTIONS"
    "proxy, RedisStore with a memory L1|$P_L1|/cached|$CONNECTIONS"
    "proxy, FsStore, 64 MiB hit|$P_FS|$BIG|2"
    "nginx proxy_cache, 64 MiB hit|$P_NGINX|$BIG|2"
    "proxy, MemoryStore, 64 MiB hit|$P_MEM|$BIG|2"
    "proxy, RedisStore, 64 MiB hit|$P_REDIS_PROXY|$BIG|2"
)

run_wrk() { # run_wrk INDEX ROUND
    local name port path conns log
    IFS='|' read -r name port path conns <<<"${TARGETS[$1]}"
    log=$OUT/wrk-$1-$2.log
    timeout 120 wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency \
        "http://127.0.0.1:$port$path" >"$log" 2>&1 || say "  (wrk failed: $log)"
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' "$log")
    p50=$(awk '$1=="50%" {print $2}' "$log")
    p99=$(awk '$1=="99%" {print $2}' "$log")
    errors=$(awk '/Non-2xx|Socket errors/ {s=s $0 "; "} END {print s}' "$log")
    echo "$1|${rps:-0}|${p50:-?}|${p99:-?}|${errors:-0}" >>"$OUT/wrk.txt"
}

commands() { # scripted calls Redis served so far (EVALSHA; a hit sends two at once)
    redis-cli -p "$P_REDIS" info commandstats | tr -d '\r' |
        awk -F'[=,:]' '$1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" {s += $3} END {print s + 0}'
}

: >"$OUT/wrk.txt"
REDIS_BEFORE=0
REDIS_AFTER=0
for round in $(seq "$ROUNDS"); do
    for i in "${!TARGETS[@]}"; do
        say "round $round: ${TARGETS[$i]%%|*}"
        if [ "$i" = 3 ] && [ "$round" = 1 ]; then
            REDIS_BEFORE=$(commands)
            run_wrk "$i" "$round"
            REDIS_AFTER=$(commands)
            cp "$OUT/wrk-$i-$round.log" "$OUT/redis-counted.log"
        else
            run_wrk "$i" "$round"
        fi
    done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
declare -a RPS
out "| target | requests/s (median) | p50 | p99 | errors | ÷ nginx (same size) |"
out "|---|---:|---:|---:|---|---:|"
for i in "${!TARGETS[@]}"; do
    RPS[$i]=$(awk -F'|' -v i="$i" '$1==i {print $2}' "$OUT/wrk.txt" | median)
done
for i in "${!TARGETS[@]}"; do
    name=${TARGETS[$i]%%|*}
    line=$(awk -F'|' -v i="$i" -v r="${RPS[$i]}" '$1==i && $2==r {print; exit}' "$OUT/wrk.txt")
    IFS='|' read -r _ _ p50 p99 errors <<<"$line"
    base=${RPS[2]}
    [ "$i" -ge 5 ] && base=${RPS[6]}
    ratio=$(awk -v a="${RPS[$i]}" -v b="$base" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}')
    out "| $name | ${RPS[$i]} | $p50 | $p99 | $errors | $ratio |"
done
out ""

REQS=$(awk '/requests in/ {print $1}' "$OUT/redis-counted.log")
out "Redis scripted calls (EVALSHA, INFO commandstats) per proxied 1 KiB hit, over one wrk run: $(awk -v c=$((REDIS_AFTER - REDIS_BEFORE)) -v r="${REQS:-0}" 'BEGIN {printf (r > 0 ? "%.2f" : "?"), c / r}') ($((REDIS_AFTER - REDIS_BEFORE)) calls, ${REQS:-?} requests)."
out ""
out "redis-benchmark on the same server, 1 KiB values, 32 clients:"
out ""
out '```'
redis-benchmark -h 127.0.0.1 -p "$P_REDIS" -t set,get -d 1024 -n 200000 -c 32 -q 2>&1 |
    tr '\r' '\n' | grep -E '^(SET|GET):.*requests per second' | sed 's/^ *//' | tee -a "$REPORT"
out '```'
say "report: $REPORT"
