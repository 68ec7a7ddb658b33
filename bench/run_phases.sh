#!/usr/bin/env bash
# Measures the two halves of the pipeline apart, which is steadier than the end-to-end figure on
# a shared 2-core machine: (1) ingest alone: `serve` with processing disabled, loadgen posts
# the events (accepted/s, ack latency); (2) processing alone: `serve` restarted on the same data
# with workers, timing the backlog drain (stored/s) and the workers' CPU time per event.
# Usage: bench/run_phases.sh [loadgen options]   (e.g. --connections 4 --batch 500 --events 200000)
# With BENCH_RULES=N (and BENCH_LIST_VALUES=M, default 1000000), N event rules and intel lists of
# M values (bench/load_rules.py) are loaded through the API before phase 2, so the processing
# phase runs the rule stage as it would in production.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SLUICE_BIN:-build/sluice}
loadgen=${LOADGEN:-build/bench/loadgen}
data=$(mktemp -d /tmp/sluice-bench.XXXXXX)
export SLUICE_DATA_DIR=$data SLUICE_LISTEN=127.0.0.1:0
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$data" "$data".log*; }
trap cleanup EXIT
start() { # start LOG: runs serve, waits until /health answers
  rm -f "$data/listen.addr"
  "$bin" serve > "$1" 2>&1 & pid=$!
  for _ in $(seq 200); do [ -s "$data/listen.addr" ] && break; sleep 0.05; done
  addr=$(cat "$data/listen.addr")
  for _ in $(seq 200); do curl -s -o /dev/null "http://$addr/health" && break; sleep 0.05; done
}
cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

echo "== phase 1: ingest only (REFLEX_EVENT_PROCESSOR_DISABLED=true)"
REFLEX_EVENT_PROCESSOR_DISABLED=true REFLEX_EVENT_PROCESSOR_MAX_QUEUE_SIZE=0 start "$data.log1"
api=$(pgrep -P "$pid" | head -1)
"$loadgen" --url "http://$addr" --key "$(cat "$data/admin.key")" --no-drain "$@" |
  grep -E '^(events_accepted|load_seconds|accepted_per_s|ack_latency_p50_ms|ack_latency_p99_ms|status):'
echo "api_cpu_seconds: $(cpu "$api")"
if [ -n "${BENCH_RULES:-}" ]; then
  /usr/bin/python3 bench/load_rules.py "http://$addr" "$(cat "$data/admin.key")" "$BENCH_RULES" \
    "${BENCH_LIST_VALUES:-1000000}"
fi
stop

echo "== phase 2: processing only (workers drain the backlog)"
t0=$(date +%s.%N)
start "$data.log2"
key=$(cat "$data/admin.key")
while :; do
  size=$(curl -s -H "Authorization: Bearer $key" "http://$addr/api/v2.0/event/queue_stats" |
    sed -n 's/.*"size":\([0-9]*\).*/\1/p')
  [ "${size:-1}" = 0 ] && break
  sleep 0.05
done
t1=$(date +%s.%N)
stats=$(curl -s -H "Authorization: Bearer $key" "http://$addr/api/v2.0/event/queue_stats")
stored=$(echo "$stats" | sed -n 's/.*"stored":\([0-9]*\).*/\1/p')
echo "stored: $stored"
awk -v a="$t0" -v b="$t1" -v n="$stored" 'BEGIN {printf "drain_seconds: %.3f\nstored_per_s: %d\n", b - a, n / (b - a)}'
for w in $(pgrep -P "$pid"); do
  role=$(grep -o "\[[a-z0-9-]* pid=$w\]" "$data.log2" | head -1 | tr -d '[]' | cut -d' ' -f1)
  echo "cpu_seconds_${role:-unknown}: $(cpu "$w")"
done
stop
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
