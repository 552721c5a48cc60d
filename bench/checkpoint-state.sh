#!/usr/bin/env bash
# Checkpoint duration and size against window state size, and recovery after kill -9 (issue 22).
# For each key count K: a generator feeds a 1-hour tumbling window keyed by id % K (so state only
# grows), checkpoints every 5 s for RUN_SECONDS; then the job is killed with SIGKILL and started
# again, and the time from the restart to "state restored" (every subtask's state read, decoded
# and merged) is reported. Usage: bench/checkpoint-state.sh [K ...] (default 200000 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."
weir="$PWD/target/release/weir"
run_seconds="${RUN_SECONDS:-25}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| keys | state (last checkpoint) | checkpoint duration (median, max) | restart to state restored |"
echo "|---:|---:|---:|---:|"
for keys in "${@:-200000 2000000}"; do
    dir="$work/$keys"
    mkdir -p "$dir"
    cat > "$dir/state.yaml" <<YAML
settings: { job_id: state-$keys, checkpoint: { interval: 5s, storage: checkpoints } }
sources:
  events: { type: generator, rate: 2000000, event_time: { column: ts }, columns: { id: { sequence: { start: 0 } }, ts: { timestamp: { start: "2024-01-01T00:00:00Z", step: 1us } } } }
transforms:
  keyed: { type: select, inputs: [events], columns: ["id % $keys AS k", "id", "ts"] }
  per_hour: { type: window, inputs: [keyed], tumble: 1h, group_by: [k], aggregates: { n: "count(*)", total: "sum(id)" } }
sinks:
  out: { type: blackhole, inputs: [per_hour] }
YAML
    (cd "$dir" && exec "$weir" run --quiet --no-admin state.yaml 2> first.log) &
    pid=$!
    sleep "$run_seconds"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    bytes=$(grep -o 'bytes=[0-9]*' "$dir/first.log" | tail -1 | cut -d= -f2)
    durations=$(grep -o 'duration_ms=[0-9]*' "$dir/first.log" | cut -d= -f2 | sort -n)
    median=$(echo "$durations" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    max=$(echo "$durations" | tail -1)
    start=$(date +%s.%N)
    (cd "$dir" && exec "$weir" run --quiet --no-admin state.yaml 2> second.log) &
    pid=$!
    until [ "$(grep -c "state restored" "$dir/second.log" 2>/dev/null)" -ge 2 ]; do
        kill -0 "$pid" 2>/dev/null || { echo "the restart failed:"; tail -3 "$dir/second.log"; exit 1; }
        sleep 0.01
    done
    restored=$(date +%s.%N)
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    printf "| %s | %.1f MB | %s ms, %s ms | %.2f s |\n" "$keys" "$(echo "$bytes / 1000000" | bc -l)" "$median" "$max" \
        "$(echo "$restored - $start" | bc -l)"
done
