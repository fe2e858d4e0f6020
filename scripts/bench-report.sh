#!/usr/bin/env bash
# Benchmarks retcd against real etcd (3.4) with retcd-bench and writes
# docs/benchmark.md.
#
# Each server runs on loopback (free ports, temp data dirs), one cluster at a
# time, as a single member and as three members: a "session" starts a fresh
# cluster, runs every benchmark below against it (against all its members'
# endpoints), reads each member's peak RSS (VmHWM) and stops it. Sessions are
# interleaved (etcd, retcd, etcd, retcd, ...) REPEATS times per cluster size
# and the report gives the median of each figure. Everything started here is
# stopped on exit.
#
# Usage: scripts/bench-report.sh            (REPEATS=3, SIZES="1 3" by default)
#        REPEATS=2 SIZES=3 OUT=/tmp/b.md scripts/bench-report.sh
# Needs: cargo, etcd and etcdctl (Debian: etcd-server etcd-client), jq, python3.
set -euo pipefail

cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-3}
SIZES=${SIZES:-1 3}
OUT=${OUT:-docs/benchmark.md}
ETCD=${ETCD:-$(command -v etcd || true)}
ETCDCTL=${ETCDCTL:-$(command -v etcdctl || true)}
for tool in "$ETCD" "$ETCDCTL" "$(command -v jq || true)" "$(command -v python3 || true)"; do
    [ -n "$tool" ] || { echo "bench-report: needs etcd, etcdctl, jq and python3 on PATH" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/retcd-bench-report.XXXXXX")
SERVER_PIDS=()
stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SERVER_PIDS=()
}
cleanup() {
    stop_servers

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

# start_servers KIND DIR SIZE: starts a SIZE-member etcd or retcd cluster,
# sets SERVER_PIDS and ENDPOINTS (every member's client address).
start_servers() {
    local kind=$1 dir=$2 size=$3 bin i cluster="" ep
    local -a cports=() pports=()
    [ "$kind" = etcd ] && bin=$ETCD || bin=$RETCD
    for i in $(seq 1 "$size"); do
        cports+=("$(free_port)")
        pports+=("$(free_port)")
        cluster+="${cluster:+,}m$i=http://127.0.0.1:${pports[-1]}"
    done
    ENDPOINTS=""
    for i in $(seq 1 "$size"); do
        mkdir -p "$dir/m$i"
        "$bin" --name "m$i" --data-dir "$dir/m$i/data" \
            --listen-client-urls "http://127.0.0.1:${cports[i-1]}" --advertise-client-urls "http://127.0.0.1:${cports[i-1]}" \
            --listen-peer-urls "http://127.0.0.1:${pports[i-1]}" --initial-advertise-peer-urls "http://127.0.0.1:${pports[i-1]}" \
            --initial-cluster "$cluster" --initial-cluster-token "bench-$kind" >"$dir/m$i/server.log" 2>&1 &
        SERVER_PIDS+=($!)
        ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:${cports[i-1]}"
    done
    # Ready when a linearizable read succeeds on every member (a leader
    # exists) and each port is served by our process (a lost port race
    # makes a member exit at bind).
    for i in $(seq 1 "$size"); do
        ep="127.0.0.1:${cports[i-1]}"
        local pid=${SERVER_PIDS[i-1]} try ready=""
        for try in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || { cat "$dir/m$i/server.log" >&2; echo "bench-report: $kind member m$i exited" >&2; exit 1; }
            if "$BENCH" --endpoints "$ep" --dial-timeout 0.5 range ready --total 1 --json >/dev/null 2>&1; then
                ready=1
                break
            fi
            sleep 0.1
        done
        if [ -z "$ready" ]; then
            echo "bench-report: $kind member m$i not ready; log:" >&2
            cat "$dir/m$i/server.log" >&2
            exit 1
        fi
        ss -ltnp 2>/dev/null | grep ":${cports[i-1]} " | grep -q "pid=$pid," ||
            { echo "bench-report: port ${cports[i-1]} is not served by our $kind" >&2; exit 1; }
    done
}


# CPU ticks of all the cluster's members together.
cluster_ticks() {
    local pid sum=0
    for pid in "${SERVER_PIDS[@]}"; do sum=$(( sum + $(cpu_ticks "$pid") )); done
    echo "$sum"
}

# The benchmarks: name|arguments (after --endpoints).
BENCHES=(
    "put-1|--conns 1 --clients 1 put --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000 --total 2000"
    "put-100|--conns 10 --clients 100 put --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000 --total 50000"
    "range-l|--conns 10 --clients 100 range foo --consistency l --total 100000"
    "range-s|--conns 10 --clients 100 range foo --consistency s --total 100000"
    "watch|--conns 1 --clients 10 watch --streams 10 --watch-per-stream 10 --watched-key-total 1 --put-total 2000 --put-rate 500"
)

# session KIND SIZE REP: one fresh cluster, every benchmark, peak RSS (the
# largest member's). Results are named KIND-SIZE-REP-BENCH.
session() {
    local kind=$1 size=$2 rep=$3 dir="$WORK/$1-$2-$3" entry name args before after tag="$1-$2-$3" pid rss max=0
    start_servers "$kind" "$dir" "$size"
    log "$kind x$size run $rep: pids ${SERVER_PIDS[*]} on $ENDPOINTS"
    for entry in "${BENCHES[@]}"; do
        name=${entry%%|*}
        args=${entry#*|}
        if [ "$name" = range-l ]; then
            # The key the range benchmarks read: 256 bytes, like the puts.
            ETCDCTL_API=3 "$ETCDCTL" --endpoints "$ENDPOINTS" put foo "$(head -c 256 /dev/zero | tr '\0' v)" >/dev/null
        fi
        before=$(cluster_ticks)
        # shellcheck disable=SC2086
        "$BENCH" --endpoints "$ENDPOINTS" $args --summary-json "$WORK/$tag-$name.json" >"$WORK/$tag-$name.txt"
        after=$(cluster_ticks)
        echo "$(( after - before ))" >"$WORK/$tag-$name.cpu"
        log "  $name: $(jq -r '.reports[0] | "\(.requests_per_sec | floor) req/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, errors \(.errors)"' "$WORK/$tag-$name.json")"
    done
    for pid in "${SERVER_PIDS[@]}"; do
        rss=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
        [ "$rss" -gt "$max" ] && max=$rss
    done
    echo "$max" >"$WORK/$tag.rss"
    stop_servers
}

START=$(date -u +"%Y-%m-%d %H:%M UTC")
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for size in $SIZES; do
    for rep in $(seq 1 "$REPEATS"); do
        session etcd "$size" "$rep"
        session retcd "$size" "$rep"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the report ---------------------------------------------------------------

# median KIND NAME JQ-EXPR: median over the runs of a figure of a report.
median() {
    local kind=$1 name=$2 expr=$3
    jq -s "map($expr) | sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end" \
        "$WORK"/"$kind"-"$SIZE"-*-"$name".json
}
median_file() { # median of the numbers in files matching a glob
    cat "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
all_runs() { jq -r "$2" "$WORK"/"$1"-"$SIZE"-*-"$3".json | tr '\n' ' ' | sed 's/ $//'; }
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
        e_n=$(jq -r 'if .command == "watch" then .reports[2].total else .reports[0].total end' "$WORK/etcd-$SIZE-1-$name.json")
        r_n=$(jq -r 'if .command == "watch" then .reports[2].total else .reports[0].total end' "$WORK/retcd-$SIZE-1-$name.json")
        e_cpu=$(median_file "$WORK"/etcd-"$SIZE"-*-"$name".cpu)
        r_cpu=$(median_file "$WORK"/retcd-"$SIZE"-*-"$name".cpu)
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
        ee=$(jq -s 'map(.reports | map(.errors) | add) | add' "$WORK"/etcd-"$SIZE"-*-"$name".json)
        re=$(jq -s 'map(.reports | map(.errors) | add) | add' "$WORK"/retcd-"$SIZE"-*-"$name".json)
        echo "| ${LABEL[$name]} | $(all_runs etcd '.reports[0].requests_per_sec | floor' "$name") | $(all_runs retcd '.reports[0].requests_per_sec | floor' "$name") | $ee / $re |"
    done
}

# section SIZE: the results of one cluster size.
section() {
    SIZE=$1
    local title="Single member" e_rss r_rss
    [ "$SIZE" = 1 ] || title="$SIZE members"
    e_rss=$(( $(median_file "$WORK"/etcd-"$SIZE"-*.rss) / 1024 ))
    r_rss=$(( $(median_file "$WORK"/retcd-"$SIZE"-*.rss) / 1024 ))
    echo "## $title"
    echo
    echo "Peak RSS (VmHWM; the largest member's; median of the runs): etcd $e_rss MiB, retcd $r_rss MiB."
    echo
    table
    echo
    echo "Each run:"
    echo
    runs_table
    echo
}

# Hand-written notes between the markers survive regeneration.
NOTES=""
if [ -f "$OUT" ]; then
    NOTES=$(awk '/<!-- notes:begin -->/ { on = 1; next } /<!-- notes:end -->/ { on = 0 } on' "$OUT")
fi

GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo " (with uncommitted changes in the work tree)" || true)

{
    cat <<EOF
# Benchmark: retcd vs etcd

Generated by \`scripts/bench-report.sh\` on $START. Medians of $REPEATS runs per
server and cluster size, the servers' runs interleaved (etcd, retcd, etcd,
retcd, ...), each run on fresh data dirs. Ratios are retcd / etcd: above 1x
retcd has more throughput; for latency, below 1x retcd is faster.

**Read with care.** The machine has $(nproc) cores shared by the servers, the
load generator (retcd-bench, which runs on the same cores) and, while this ran,
other engineers compiling and running tests (load average $LOAD_BEFORE before,
$LOAD_AFTER after). Absolute numbers are noisy and low; compare ratios, and
look at the per-run numbers before trusting a small difference. Three members
on two cores share the CPU three ways, so their absolute numbers say little
about a real cluster; the comparison with etcd under the same handicap is the
point.

| | etcd | retcd |
|---|---|---|
| version | $("$ETCD" --version | head -1 | sed 's/etcd Version: //') | $GIT_REV$GIT_DIRTY, release build |

- req/s: successful requests per second of wall-clock time (for *watch*:
  events received per second); p50 / p99: request latency (for *watch*: from
  sending a put to a watcher receiving its event, i.e. commit plus delivery).
- server CPU µs/req: the server processes' user + system CPU time during the
  benchmark (all members together) divided by its requests (for *watch*: per
  put). Less sensitive to the machine's other load than throughput is.
- With three members the benchmark is given all three endpoints: its
  connections are spread over the members, so writes reach followers too
  (forwarded to the leader) and linearizable reads are served by every
  member after a read-index round with the leader.

$(for size in $SIZES; do section "$size"; done)

## Machine

- $(nproc) cores ($(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)
- data dirs under ${TMPDIR:-/tmp} ($(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }'))
- both servers with default flags, loopback, no TLS

## Commands

Each member was started as

\`\`\`sh
<etcd|target/release/retcd> --name mN --data-dir DIR \\
  --listen-client-urls http://127.0.0.1:PORT --advertise-client-urls http://127.0.0.1:PORT \\
  --listen-peer-urls http://127.0.0.1:PEER --initial-advertise-peer-urls http://127.0.0.1:PEER \\
  --initial-cluster m1=http://127.0.0.1:PEER1[,m2=...,m3=...] --initial-cluster-token bench-<etcd|retcd>
\`\`\`

and, in this order, measured with:

\`\`\`sh
$(for entry in "${BENCHES[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    [ "$name" = range-l ] && echo "etcdctl --endpoints ENDPOINTS put foo <256 bytes>   # the key read below"
    echo "retcd-bench --endpoints ENDPOINTS $args"
done)
\`\`\`

## Not measured here

- TLS, auth, leases and txns under load (\`retcd-bench lease-keepalive\`,
  \`txn-put\`, \`txn-mixed\` and \`watch-get\` exist; they are not in this report).

## Notes

<!-- notes:begin -->
$NOTES
<!-- notes:end -->
EOF
} >"$OUT"
log "wrote $OUT"
