# Shared by bench-load/run.sh and bench-load/stores.sh (sourced, after they set OUT, RUN
# and REPORT): messages, the processes they start and their cleanup, and waiting on ports.

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
out() { printf '%s\n' "$*" | tee -a "$REPORT"; }

# ---------------------------------------------------------------- processes and cleanup
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # start NAME CMD...: runs CMD in the background, logs to $OUT/NAME.log
    local name=$1
    shift
    "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # wait_http URL: up to 15 s for any HTTP answer
    local i
    for i in $(seq 150); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    return 1
}
