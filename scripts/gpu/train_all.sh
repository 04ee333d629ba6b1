#!/usr/bin/env bash
# Trains every model on one GPU machine at once, in two calls of the lent-GPU tool (only 64 MB of data
# travel per call, so the models' data come in two parts):
#   bash scripts/gpu/train_all.sh start A   # installs, starts the call-A jobs in the background (setsid)
#   bash scripts/gpu/train_all.sh finish B  # starts the call-B jobs, waits for all, packs results into $OUT,
#                                           # then times inference per model on the GPU
# Each job is a function in scripts/gpu/jobs.sh; it writes into /tmp/gpu/<key>/ and logs to /tmp/gpu/<key>.log.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-/tmp/gpu}
OUT=${OUT:-$RUNS/out}
PY=${PY:-python3}
export PY RUNS
mkdir -p "$RUNS" "$OUT"
source "$HERE/offline_env.sh" || exit 1
source "$HERE/jobs.sh"

start_jobs() {  # keys...: each in its own process session, so it outlives the call that started it
    for key in "$@"; do
        mkdir -p "$RUNS/$key"
        setsid nohup bash -c "source '$HERE/jobs.sh'; job_$key; echo \"exit \$?\" > '$RUNS/$key.done'" \
            > "$RUNS/$key.log" 2>&1 < /dev/null &
        echo "started $key (pid $!)"
    done
}

show() {
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
    for key in $ALL_JOBS; do [ -f "$RUNS/$key.log" ] && echo "[$key] $(tail -c 300 "$RUNS/$key.log" | tr '\r' '\n' | tail -n 1)"; done
}

wait_for_all() {  # until every started job wrote its .done file, or the deadline (seconds)
    local deadline=$(( $(date +%s) + $1 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        local left=0
        for key in $ALL_JOBS; do [ -d "$RUNS/$key" ] && [ ! -f "$RUNS/$key.done" ] && left=$((left + 1)); done
        [ "$left" -eq 0 ] && return 0
        show; sleep 30
    done
    echo "deadline reached; packing what there is"
}

pack() {
    for key in $ALL_JOBS; do
        [ -d "$RUNS/$key" ] || continue
        cp "$RUNS/$key.log" "$RUNS/$key/" 2>/dev/null
        cat "$RUNS/$key.done" 2>/dev/null
        tar -czf "$OUT/$key.tgz" -C "$RUNS/$key" --exclude=./scratch .
        ls -la "$OUT/$key.tgz"
    done
}

phase=$1; part=${2:-}
case "$phase" in
    start)
        nvidia-smi > "$RUNS/nvidia_smi.txt" 2>&1; head -n 12 "$RUNS/nvidia_smi.txt"
        # shellcheck disable=SC2046
        start_jobs $(jobs_of "$part")
        sleep "${SETTLE:-45}"; show ;;
    finish)
        [ -d "$RUNS" ] && ls "$RUNS"
        start_jobs $(jobs_of "$part")
        wait_for_all "${WAIT_S:-520}"
        show; pack
        "$PY" benchmarks/bench_inference_devices.py --devices cuda --repeats 3 2>&1 | tee "$OUT/inference_gpu.txt" ;;
    *) echo "usage: train_all.sh start|finish A|B" >&2; exit 2 ;;
esac
