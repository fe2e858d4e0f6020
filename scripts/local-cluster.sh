#!/usr/bin/env bash
# Starts or stops the handbook's three-member cluster on loopback:
#   infra1: clients 127.0.0.1:12379, peers 127.0.0.1:12380
#   infra2: clients 127.0.0.1:22379, peers 127.0.0.1:22380
#   infra3: clients 127.0.0.1:32379, peers 127.0.0.1:32380
# Usage: scripts/local-cluster.sh start|stop|status [data-root]
# Data dirs and logs live under data-root (default: ./local-cluster).
set -euo pipefail
cmd=${1:-}
root=${2:-local-cluster}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${RETCD_BIN:-$here/target/release/retcd}
cluster="infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380"

case "$cmd" in
start)
  if [ ! -x "$bin" ]; then
    (cd "$here" && cargo build --release --bin retcd)
  fi
  mkdir -p "$root"
  for i in 1 2 3; do
    "$bin" --name "infra$i" --data-dir "$root/infra$i.etcd" \
      --listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
      --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
      --initial-cluster "$cluster" --initial-cluster-token retcd-local --initial-cluster-state new \
      >"$root/infra$i.log" 2>&1 &
    echo $! >"$root/infra$i.pid"
  done
  # Wait (bounded) until every member answers on its client port.
  for _ in $(seq 1 100); do
    up=0
    for i in 1 2 3; do
      (exec 3<>"/dev/tcp/127.0.0.1/${i}2379") 2>/dev/null && up=$((up + 1))
    done
    [ "$up" -eq 3 ] && break
    sleep 0.1
  done
  echo "started: endpoints 127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379 (logs in $root)"
  ;;
stop)
  for i in 1 2 3; do
    if [ -f "$root/infra$i.pid" ]; then
      kill "$(cat "$root/infra$i.pid")" 2>/dev/null || true
      rm -f "$root/infra$i.pid"
    fi
  done
  echo "stopped (data kept in $root)"
  ;;
status)
  for i in 1 2 3; do
    if [ -f "$root/infra$i.pid" ] && kill -0 "$(cat "$root/infra$i.pid")" 2>/dev/null; then
      echo "infra$i running (pid $(cat "$root/infra$i.pid"))"
    else
      echo "infra$i not running"
    fi
  done
  ;;
*)
  echo "usage: $0 start|stop|status [data-root]" >&2
  exit 2
  ;;
esac
