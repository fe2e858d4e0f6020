#!/usr/bin/env bash
# Benchmarks retcd against real etcd (3.4) with retcd-bench and writes
# docs/benchmark.md.
#
# Each server runs single-member on loopback (free ports, temp data dir), one
# server at a time: a "session" starts a fresh server, runs every benchmark
# below against it, reads its peak RSS (VmHWM) and stops it. Sessions are
# interleaved (etcd, retcd, etcd, retcd, ...) REPEATS times and the report
# gives the median of each figure. Everything started here is stopped on exit.
#
# Usage: scripts/bench-report.sh            (REPEATS=3 by default)
#        REPEATS=2 OUT=/tmp/b.md scripts/bench-report.sh
# Needs: cargo, etcd and etcdctl (Debian: etcd-server etcd-client), jq, python3.
set -euo pipefail

cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-3}
OUT=${OUT:-docs/benchmark.md}
ETCD=${ETCD:-$(command -v etcd || true)}
ETCDCTL=${ETCDCTL:-$(command -v etcdctl || true)}
for tool in "$ETCD" "$ETCDCTL" "$(command -v jq || true)" "$(command -v python3 || true)"; do
    [ -n "$tool" ] || { echo "bench-report: needs etcd, etcdctl, jq and python3 on PATH" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/retcd-bench-report.XXXXXX")
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "bench-report: results kept in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

log "building release binaries"
cargo build --release -p retcd-server --bin retcd -p retcd-bench --bin retcd-bench >&2
RETCD=target/release/retcd
BENCH=target/release/retcd-bench

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU time (utime + stime) of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

# start_server KIND DIR: starts etcd or retcd, sets SERVER_PID and ENDPOINT.
start_server() {
    local kind=$1 dir=$2 bin cport pport
    [ "$kind" = etcd ] && bin=$ETCD || bin=$RETCD
    mkdir -p "$dir"
    cport=$(free_port)
    pport=$(free_port)
    "$bin" --name default --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "default=http://127.0.0.1:$pport" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    ENDPOINT="127.0.0.1:$cport"
    # Ready when a linearizable read succeeds (a leader exists) and the
    # process is still ours (a lost port race makes it exit at bind).
    local i
    for i in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir/server.log" >&2; echo "bench-report: $kind exited" >&2; exit 1; }
        if "$BENCH" --endpoints "$ENDPOINT" --dial-timeout 0.5 range ready --total 1 --json >/dev/null 2>&1; then
            sleep 0.2
            kill -0 "$SERVER_PID" 2>/dev/null && ss -ltnp 2>/dev/null | grep ":$cport " | grep -q "pid=$SERVER_PID," && return 0
            echo "bench-report: port $cport is not served by our $kind" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "bench-report: $kind not ready; log:" >&2
    cat "$dir/server.log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# The benchmarks: name|arguments (after --endpoints).
BENCHES=(
    "put-1|--conns 1 --clients 1 put --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000 --total 2000"
    "put-100|--conns 10 --clients 100 put --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000 --total 50000"
    "range-l|--conns 10 --clients 100 range foo --consistency l --total 100000"
    "range-s|--conns 10 --clients 100 range foo --consistency s --total 100000"
    "watch|--conns 1 --clients 10 watch --streams 10 --watch-per-stream 10 --watched-key-total 1 --put-total 2000 --put-rate 500"
)

# session KIND REP: one fresh server, every benchmark, peak RSS.
session() {
    local kind=$1 rep=$2 dir="$WORK/$1-$2" entry name args before after
    start_server "$kind" "$dir"
    log "$kind run $rep: pid $SERVER_PID on $ENDPOINT"
    for entry in "${BENCHES[@]}"; do
        name=${entry%%|*}
        args=${entry#*|}
        if [ "$name" = range-l ]; then
            # The key the range benchmarks read: 256 bytes, like the puts.
            ETCDCTL_API=3 "$ETCDCTL" --endpoints "$ENDPOINT" put foo "$(head -c 256 /dev/zero | tr '\0' v)" >/dev/null
        fi
        before=$(cpu_ticks "$SERVER_PID")
        # shellcheck disable=SC2086
        "$BENCH" --endpoints "$ENDPOINT" $args --summary-json "$WORK/$kind-$rep-$name.json" >"$WORK/$kind-$rep-$name.txt"
        after=$(cpu_ticks "$SERVER_PID")
        echo "$(( after - before ))" >"$WORK/$kind-$rep-$name.cpu"
        log "  $name: $(jq -r '.reports[0] | "\(.requests_per_sec | floor) req/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, errors \(.errors)"' "$WORK/$kind-$rep-$name.json")"
    done
    awk '/VmHWM/ { print $2 }' "/proc/$SERVER_PID/status" >"$WORK/$kind-$rep.rss"
    stop_server
}

START=$(date -u +"%Y-%m-%d %H:%M UTC")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq 1 "$REPEATS"); do
    session etcd "$rep"
    session retcd "$rep"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the report ---------------------------------------------------------------

# median KIND NAME JQ-EXPR: median over the runs of a figure of a report.
median() {
    local kind=$1 name=$2 expr=$3
    jq -s "map($expr) | sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end" \
        "$WORK"/"$kind"-*-"$name".json
}
median_file() { # median of the numbers in files matching a glob
    cat "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
all_runs() { jq -r "$2" "$WORK"/"$1"-*-"$3".json | tr '\n' ' ' | sed 's/ $//'; }
fmt() { python3 -c "import sys; v = float(sys.argv[1]); print(f'{v:,.0f}' if v >= 100 else f'{v:.2f}')" "$1"; }
ratio() { python3 -c "import sys; e, r = float(sys.argv[1]), float(sys.argv[2]); print(f'{r / e:.2f}x' if e > 0 else 'n/a')" "$1" "$2"; }

declare -A LABEL=(
    [put-1]="put, 1 client"
    [put-100]="put, 100 clients / 10 conns"
    [range-l]="range linearizable, 100 clients"
    [range-s]="range serializable, 100 clients"
    [watch]="watch: 100 watchers on 1 key, 500 puts/s"
)

table() {
    echo "| benchmark | etcd req/s | retcd req/s | retcd/etcd | etcd p50 ms | retcd p50 ms | etcd p99 ms | retcd p99 ms | p99 retcd/etcd | server CPU µs/req etcd | retcd |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local entry name e_rps r_rps e50 r50 e99 r99 e_cpu r_cpu e_n r_n
    for entry in "${BENCHES[@]}"; do
        name=${entry%%|*}
        e_rps=$(median etcd "$name" '.reports[0].requests_per_sec')
        r_rps=$(median retcd "$name" '.reports[0].requests_per_sec')
        e50=$(median etcd "$name" '.reports[0].latency_ms.p50')
        r50=$(median retcd "$name" '.reports[0].latency_ms.p50')
        e99=$(median etcd "$name" '.reports[0].latency_ms.p99')
        r99=$(median retcd "$name" '.reports[0].latency_ms.p99')
        # Server CPU per request: ticks -> µs, over the requests of the run
        # (for watch: per put, which is what the server is asked to do).
        e_n=$(jq -r 'if .command == "watch" then .reports[2].total else .reports[0].total end' "$WORK/etcd-1-$name.json")
        r_n=$(jq -r 'if .command == "watch" then .reports[2].total else .reports[0].total end' "$WORK/retcd-1-$name.json")
        e_cpu=$(median_file "$WORK"/etcd-*-"$name".cpu)
        r_cpu=$(median_file "$WORK"/retcd-*-"$name".cpu)
        e_cpu=$(python3 -c "print($e_cpu * 1e6 / $TICKS / $e_n)")
        r_cpu=$(python3 -c "print($r_cpu * 1e6 / $TICKS / $r_n)")
        echo "| ${LABEL[$name]} | $(fmt "$e_rps") | $(fmt "$r_rps") | **$(ratio "$e_rps" "$r_rps")** | $(fmt "$e50") | $(fmt "$r50") | $(fmt "$e99") | $(fmt "$r99") | $(ratio "$e99" "$r99") | $(fmt "$e_cpu") | $(fmt "$r_cpu") |"
    done
}

runs_table() {
    echo "| benchmark | etcd req/s, each run | retcd req/s, each run | errors (etcd / retcd, all runs) |"
    echo "|---|---|---|---|"
    local entry name ee re
    for entry in "${BENCHES[@]}"; do
        name=${entry%%|*}
        ee=$(jq -s 'map(.reports | map(.errors) | add) | add' "$WORK"/etcd-*-"$name".json)
        re=$(jq -s 'map(.reports | map(.errors) | add) | add' "$WORK"/retcd-*-"$name".json)
        echo "| ${LABEL[$name]} | $(all_runs etcd '.reports[0].requests_per_sec | floor' "$name") | $(all_runs retcd '.reports[0].requests_per_sec | floor' "$name") | $ee / $re |"
    done
}

E_RSS=$(median_file "$WORK"/etcd-*.rss)
R_RSS=$(median_file "$WORK"/retcd-*.rss)

# Hand-written notes between the markers survive regeneration.
NOTES=""
if [ -f "$OUT" ]; then
    NOTES=$(awk '/<!-- notes:begin -->/ { on = 1; next } /<!-- notes:end -->/ { on = 0 } on' "$OUT")
fi

GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo " (with uncommitted changes in the work tree)" || true)

{
    cat <<EOF
# Benchmark: retcd vs etcd, single member

Generated by \`scripts/bench-report.sh\` on $START. Medians of $REPEATS runs per
server, the servers' runs interleaved (etcd, retcd, etcd, retcd, ...), each
run on a fresh data dir. Ratios are retcd / etcd: above 1x retcd has more
throughput; for latency, below 1x retcd is faster.

**Read with care.** The machine has $(nproc) cores shared by the server, the
load generator (retcd-bench, which runs on the same cores) and, while this ran,
other engineers compiling and running tests (load average $LOAD_BEFORE before,
$LOAD_AFTER after). Absolute numbers are noisy and low; compare ratios, and
look at the per-run numbers below before trusting a small difference.

| | etcd | retcd |
|---|---|---|
| version | $("$ETCD" --version | head -1 | sed 's/etcd Version: //') | $GIT_REV$GIT_DIRTY, release build |
| peak RSS (VmHWM, median of the runs' peaks) | $((E_RSS / 1024)) MiB | $((R_RSS / 1024)) MiB |

## Results

$(table)

- req/s: successful requests per second of wall-clock time (for *watch*:
  events received per second); p50 / p99: request latency (for *watch*: from
  sending a put to a watcher receiving its event, i.e. commit plus delivery).
- server CPU µs/req: the server process's user + system CPU time during the
  benchmark divided by its requests (for *watch*: per put). Less sensitive to
  the machine's other load than throughput is.

Each run:

$(runs_table)

## Machine

- $(nproc) cores ($(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)
- data dirs under ${TMPDIR:-/tmp} ($(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }'))
- both servers with default flags: single member, loopback, no TLS

## Commands

Each server was started as

\`\`\`sh
<etcd|target/release/retcd> --name default --data-dir DIR \\
  --listen-client-urls http://127.0.0.1:PORT --advertise-client-urls http://127.0.0.1:PORT \\
  --listen-peer-urls http://127.0.0.1:PEER --initial-advertise-peer-urls http://127.0.0.1:PEER \\
  --initial-cluster default=http://127.0.0.1:PEER
\`\`\`

and, in this order, measured with:

\`\`\`sh
$(for entry in "${BENCHES[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    [ "$name" = range-l ] && echo "etcdctl --endpoints 127.0.0.1:PORT put foo <256 bytes>   # the key read below"
    echo "retcd-bench --endpoints 127.0.0.1:PORT $args"
done)
\`\`\`

## Not measured here

- **Three members.** The three-member half of etcd's performance table
  (writes to the leader / to all members, reads through followers) is out of
  scope for this report: it was written when retcd was single-member only.
  Statically bootstrapped clusters have landed since (\`scripts/local-cluster.sh\`),
  so it is the next thing to add here.
- TLS, auth, leases and txns under load (\`retcd-bench lease-keepalive\`,
  \`txn-put\`, \`txn-mixed\` and \`watch-get\` exist; they are not in this report).

## Notes

<!-- notes:begin -->
$NOTES
<!-- notes:end -->
EOF
} >"$OUT"
log "wrote $OUT"
