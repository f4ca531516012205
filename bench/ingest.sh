#!/usr/bin/env bash
# Webhook ingest benchmarks, rerunnable: throughput and acknowledgement latency per store,
# delivery-to-effect against a fake GitHub, the server's memory at idle and under load, and the
# load generator's own ceiling against a do-nothing sink. See bench/README.md.
#
#   bash bench/ingest.sh            # SQLite (+ the sink ceiling)
#   bash bench/ingest.sh --pg       # and PostgreSQL (postgres://postgres@127.0.0.1:5432/test)
#
# Environment: ROLLGATE_BIN (skip building rollgate), LOADGEN_BIN (skip building the
# generator), ROLLGATE_BENCH_PG (a PostgreSQL URL; turns PostgreSQL on), ROLLGATE_LOG (the
# server's log filter; its log goes to a file), BENCH_RUNS, BENCH_DURATION, BENCH_WARMUP,
# BENCH_CONNECTIONS, BENCH_RATE, BENCH_EFFECT_RATE, BENCH_OUT.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bash bench/ingest.sh [--pg] [--no-sqlite] [--no-sink] [--only max,rate,effect]
                            [--runs N] [--duration SECS] [--out DIR]
  --pg          also benchmark PostgreSQL (URL from ROLLGATE_BENCH_PG, else
                postgres://postgres@127.0.0.1:5432/test; each run gets a fresh database)
  --no-sqlite   skip SQLite
  --no-sink     skip the generator-ceiling run against the do-nothing sink
  --only LIST   measurements to run (default max,rate,effect)
  --runs N      repetitions of each measurement; the table shows the median (default 3)
  --duration S  measured seconds per run (default 20; 2 s of warm-up come first)
  --out DIR     where results.jsonl and table.md go (default: a new temporary directory)
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-20}
WARMUP=${BENCH_WARMUP:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
RATE=${BENCH_RATE:-2000}
EFFECT_RATE=${BENCH_EFFECT_RATE:-200}
OUT=${BENCH_OUT:-}
PG_URL=${ROLLGATE_BENCH_PG:-}
DO_PG=false
[[ -n "$PG_URL" ]] && DO_PG=true
DO_SQLITE=true
DO_SINK=true
ONLY=max,rate,effect

while [[ $# -gt 0 ]]; do
    case "$1" in
        --pg) DO_PG=true ;;
        --no-sqlite) DO_SQLITE=false ;;
        --no-sink) DO_SINK=false ;;
        --only) ONLY=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

FIXTURE=$REPO/tests/fixtures/github/issues.opened.json
# A benchmark-only secret; rollgate never prints it and neither does this script.
SECRET=bench-$RANDOM$RANDOM
CLK_TCK=$(getconf CLK_TCK)

# --- build ---------------------------------------------------------------------------------
if [[ -z "${ROLLGATE_BIN:-}" ]]; then
    echo "building rollgate (release, thin LTO: several minutes on 2 cores)..." >&2
    (cd "$REPO" && cargo build --release --locked)
    ROLLGATE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/rollgate
    WHAT="rollgate $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
else
    WHAT="rollgate binary $ROLLGATE_BIN"
fi
# Not a ROLLGATE_* name: the server's environment is cleared of those.
SERVER_BIN=$ROLLGATE_BIN
if [[ -z "${LOADGEN_BIN:-}" ]]; then
    echo "building the load generator..." >&2
    LOADGEN_TARGET=${LOADGEN_TARGET_DIR:-$REPO/bench/loadgen/target}
    (cd "$REPO/bench/loadgen" && CARGO_TARGET_DIR=$LOADGEN_TARGET cargo build --release --locked)
    LOADGEN_BIN=$LOADGEN_TARGET/release/rollgate-loadgen
fi
[[ -x "$ROLLGATE_BIN" ]] || { echo "no rollgate binary at $ROLLGATE_BIN" >&2; exit 1; }
[[ -x "$LOADGEN_BIN" ]] || { echo "no loadgen binary at $LOADGEN_BIN" >&2; exit 1; }
LG=$LOADGEN_BIN

if [[ -z "$OUT" ]]; then OUT=$(mktemp -d "${TMPDIR:-/tmp}/rollgate-bench.XXXXXX"); fi
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
echo "results: $RESULTS" >&2

# --- helpers -------------------------------------------------------------------------------
SERVER_PID=""
SERVER_DIR=""
SAMPLER_PID=""
PG_DB=""

cleanup() {
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    stop_server
    drop_pg_db
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# utime + stime in clock ticks; the fields after "pid (comm) " start at field 3 (state).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
now() { date +%s.%N; }

drop_pg_db() {
    if [[ -n "$PG_DB" ]]; then
        psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
        PG_DB=""
    fi
}

# DB_URL for one run: a fresh SQLite file, or a fresh PostgreSQL database when psql can create
# one (else the configured database as it is). Not called in $(...): PG_DB must survive for
# the drop.
set_store_url() {
    case "$1" in
        sqlite) DB_URL="sqlite://$SERVER_DIR/rollgate.db" ;;
        postgres)
            DB_URL=$PG_URL
            if command -v psql >/dev/null; then
                PG_DB=rollgate_bench_$$_$RANDOM
                psql -q "$PG_URL" -c "CREATE DATABASE $PG_DB" >/dev/null
                local base=${PG_URL%%\?*}
                DB_URL="${base%/*}/$PG_DB"
            fi
            ;;
    esac
}

# start_server STORE DRY_RUN [GITHUB_API_URL]: rollgate serve on a free port, in a fresh
# directory (so no ./rollgate.toml is picked up), without any ROLLGATE_* from this shell but
# the log filter. Sets SERVER_PID, SERVER_URL.
start_server() {
    local store=$1 dry=$2 api=${3:-}
    SERVER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rollgate-bench-server.XXXXXX")
    local port
    port=$("$LG" free-port)
    set_store_url "$store"
    (
        cd "$SERVER_DIR"
        for v in $(compgen -e | grep '^ROLLGATE_' | grep -v '^ROLLGATE_LOG$'); do unset "$v"; done
        export ROLLGATE_LISTEN=127.0.0.1:$port ROLLGATE_DATABASE_URL=$DB_URL \
            ROLLGATE_GITHUB_WEBHOOK_SECRET=$SECRET ROLLGATE_POLICIES=$REPO/policies ROLLGATE_DRY_RUN=$dry
        if [[ -n "$api" ]]; then
            # The fake GitHub has no rate limit, and this measures rollgate's own latency: the
            # write budget (60 a minute by default, a production safety) is lifted.
            export ROLLGATE_GITHUB_API_URL=$api ROLLGATE_GITHUB_TOKEN=bench-token ROLLGATE_GITHUB_WRITES_PER_MINUTE=0
        fi
        exec "$SERVER_BIN" serve >"$SERVER_DIR/server.log" 2>&1
    ) &
    SERVER_PID=$!
    SERVER_URL=http://127.0.0.1:$port
    for _ in $(seq 1 300); do
        if curl -fsS "$SERVER_URL/readyz" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "rollgate did not become ready ($store); the end of its log:" >&2
    tail -n 20 "$SERVER_DIR/server.log" >&2 || true
    stop_server
    return 1
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    if [[ -n "$SERVER_DIR" ]]; then rm -rf "$SERVER_DIR"; SERVER_DIR=""; fi
    drop_pg_db
}

# measure STORE TEST RUN -- LOADGEN ARGS...: runs the generator against SERVER_PID, sampling
# its RSS once a second, and appends the generator's JSON line and a server line to RESULTS.
measure() {
    local store=$1 test=$2 run=$3
    shift 4
    sleep 1 # let start-up allocations settle before the idle figure
    local idle cpu0 t0 cpu1 t1 samples line load
    idle=$(rss_kb "$SERVER_PID")
    # Other work on the machine skews everything: keep the 1-minute load average with the figures.
    load=$(cut -d' ' -f1 /proc/loadavg)
    samples=$SERVER_DIR/rss.samples
    (while kill -0 "$SERVER_PID" 2>/dev/null; do rss_kb "$SERVER_PID"; sleep 1; done) >"$samples" &
    SAMPLER_PID=$!
    cpu0=$(cpu_ticks "$SERVER_PID"); t0=$(now)
    if ! line=$("$LG" "$@" --label "store=$store" --label "test=$test" --label "run=$run"); then
        kill "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
        echo "the load generator failed ($store $test run $run)" >&2
        return 1
    fi
    cpu1=$(cpu_ticks "$SERVER_PID"); t1=$(now)
    rss_kb "$SERVER_PID" >>"$samples"
    kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
    local max pending cpu
    max=$(sort -n "$samples" | tail -n 1)
    cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) / hz / (e - s) * 100 }')
    # How far processing fell behind: events still waiting when the load stopped.
    pending=$(curl -fsS "$SERVER_URL/metrics" 2>/dev/null | awk '/^rollgate_inbox_pending / { print $2 }')
    echo "$line" >>"$RESULTS"
    printf '{"kind":"server","store":"%s","test":"%s","run":"%s","rss_idle_kb":%s,"rss_max_kb":%s,"cpu_pct":%s,"inbox_pending_after":%s,"loadavg_before":%s}\n' \
        "$store" "$test" "$run" "${idle:-0}" "${max:-0}" "$cpu" "${pending:-null}" "$load" >>"$RESULTS"
    echo "  server: RSS idle $((idle / 1024)) MB, max $((max / 1024)) MB; CPU ${cpu}% of a core; inbox pending after: ${pending:-?}" >&2
}

bench_store() {
    local store=$1
    local run
    if wants max; then
        for run in $(seq 1 "$RUNS"); do
            echo "== $store: max throughput, $CONNECTIONS connections, ${DURATION}s (run $run/$RUNS; dry run, processing still runs)" >&2
            start_server "$store" true || return 1
            measure "$store" max "$run" -- ingest --url "$SERVER_URL/webhooks/github" --secret "$SECRET" --fixture "$FIXTURE" \
                --duration "$DURATION" --warmup "$WARMUP" --max --connections "$CONNECTIONS" || return 1
            stop_server
        done
    fi
    if wants rate; then
        for run in $(seq 1 "$RUNS"); do
            echo "== $store: ack latency at $RATE/s open loop, ${DURATION}s (run $run/$RUNS; dry run)" >&2
            start_server "$store" true || return 1
            measure "$store" rate "$run" -- ingest --url "$SERVER_URL/webhooks/github" --secret "$SECRET" --fixture "$FIXTURE" \
                --duration "$DURATION" --warmup "$WARMUP" --rate "$RATE" || return 1
            stop_server
        done
    fi
    if wants effect; then
        for run in $(seq 1 "$RUNS"); do
            echo "== $store: delivery-to-effect at $EFFECT_RATE/s against the fake GitHub, ${DURATION}s (run $run/$RUNS)" >&2
            local fport
            fport=$("$LG" free-port)
            start_server "$store" false "http://127.0.0.1:$fport" || return 1
            measure "$store" effect "$run" -- effect --url "$SERVER_URL/webhooks/github" --secret "$SECRET" \
                --fixture "$FIXTURE" --rate "$EFFECT_RATE" --duration "$DURATION" --fake "127.0.0.1:$fport" || return 1
            stop_server
        done
    fi
}

bench_sink() {
    local run port
    for run in $(seq 1 "$RUNS"); do
        echo "== generator ceiling: max against a do-nothing sink (run $run/$RUNS)" >&2
        port=$("$LG" free-port)
        SERVER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rollgate-bench-sink.XXXXXX")
        "$LG" sink --listen "127.0.0.1:$port" 2>/dev/null &
        SERVER_PID=$!
        SERVER_URL=http://127.0.0.1:$port
        sleep 0.3
        measure sink max "$run" -- ingest --url "$SERVER_URL/webhooks/github" --secret "$SECRET" --fixture "$FIXTURE" \
            --duration "$DURATION" --warmup "$WARMUP" --max --connections "$CONNECTIONS" || return 1
        stop_server
    done
}

# --- run -----------------------------------------------------------------------------------
status=0
$DO_SINK && { bench_sink || status=1; }
$DO_SQLITE && { bench_store sqlite || status=1; }
if $DO_PG; then
    # The PostgreSQL store is new: if rollgate refuses postgres:// URLs, say so and go on.
    bench_store postgres || { echo "PostgreSQL run failed (is the PostgreSQL store in this build?)" >&2; status=1; }
fi

{
    echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)," \
        "load generator on the same machine; $WHAT," \
        "$(date -u +%Y-%m-%d). $RUNS runs of ${DURATION} s each (after ${WARMUP} s warm-up); median first, then every run."
    echo
    "$LG" summarize "$RESULTS"
} >"$OUT/table.md"
cat "$OUT/table.md"
echo >&2
echo "raw JSON lines: $RESULTS; table: $OUT/table.md" >&2
exit $status
