#!/usr/bin/env bash
# End-to-end ingest benchmark: starts `sluice serve` on a fresh data directory and a free port,
# runs bench/loadgen against it, and prints loadgen's summary plus the CPU time each sluice
# process used. Extra arguments go to loadgen; settings come from the environment as usual.
# Usage: bench/run_ingest.sh [loadgen options]   (e.g. --connections 4 --batch 500 --events 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SLUICE_BIN:-build/sluice}
loadgen=${LOADGEN:-build/bench/loadgen}
[ -x "$bin" ] && [ -x "$loadgen" ] || { echo "build first: scripts/build.sh release" >&2; exit 2; }
data=$(mktemp -d /tmp/sluice-bench.XXXXXX)
log="$data.log"
export SLUICE_DATA_DIR=$data SLUICE_LISTEN=127.0.0.1:0
"$bin" serve > "$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$data/listen.addr" ] && break; sleep 0.1; done
addr=$(cat "$data/listen.addr")
for _ in $(seq 100); do curl -sf "http://$addr/health" >/dev/null && break; sleep 0.1; done
"$loadgen" --url "http://$addr" --key "$(cat "$data/admin.key")" "$@"
echo "cpu_seconds_by_process:"
for p in $(pgrep -P "$pid") "$pid"; do
  role=$(grep -o "\[[a-z0-9-]* pid=$p\]" "$log" | head -1 | tr -d '[]' | cut -d' ' -f1)
  echo "  ${role:-?} $(awk '{printf "%.2f", ($14+$15)/100}' /proc/$p/stat)"
done
echo "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
