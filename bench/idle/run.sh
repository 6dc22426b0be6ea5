#!/usr/bin/env bash
# Idle cost of a full mesh: for each size N (default 5 10 15 25) bring up a lab of N hosts
# (`weft lab`), launch a router on each with every other host as a target (full mesh), wait
# until every router shows N-1 established connections on fastdp, let it settle, then read
# each router's CPU time (utime+stime of every thread, /proc/PID/stat) over DURATION
# seconds (default 10). Prints per size the mean, min and max per router in % of one core
# and the load average. Needs root (namespaces); the lab always comes down.
#
#   sudo bench/idle/run.sh            # or SIZES="5 25" DURATION=20 SETTLE=5 ...
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-"5 10 15 25"}
DURATION=${DURATION:-10}
SETTLE=${SETTLE:-5}
. bench/lib.sh
bench_needs_root "it builds network namespaces"

bench_weft
lab="bidle$$"
lab_dir=${WEFT_LAB_DIR:-/run/weft-lab}
cleanup() {
    "$WEFT" lab down --name "$lab" >/dev/null 2>&1 || echo "bench/idle/run.sh: run: $WEFT lab down --name $lab" >&2
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

cpu_ticks() { # utime + stime of a process (all its threads)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

printf '%-8s %12s %12s %12s %14s   %s\n' routers "mean %core" "min %core" "max %core" "sum %core" "loadavg before / after"
for n in $SIZES; do
    "$WEFT" lab up --hosts "$n" --name "$lab" >/dev/null 2>&1 ||
        { echo "bench/idle/run.sh: lab up --hosts $n failed" >&2; exit 1; }
    peers=$(seq -f 'h%g' 1 "$n" | tr '\n' ' ')
    for i in $(seq "$n"); do
        # shellcheck disable=SC2086
        "$WEFT" lab exec --name "$lab" "h$i" -- "$WEFT" launch $peers >/dev/null
    done
    # Converged: every router has n-1 established connections on fastdp.
    deadline=$((SECONDS + 120))
    for i in $(seq "$n"); do
        while :; do
            up=$("$WEFT" lab exec --name "$lab" "h$i" -- "$WEFT" status connections 2>/dev/null |
                grep -c 'established.*fastdp' || true)
            [ "$up" -ge $((n - 1)) ] && break
            if [ $SECONDS -ge $deadline ]; then
                echo "bench/idle/run.sh: h$i has $up of $((n - 1)) connections on fastdp after 120 s" >&2
                exit 1
            fi
            sleep 0.5
        done
    done
    sleep "$SETTLE"
    pids=()
    for i in $(seq "$n"); do
        pids+=("$(cat "$lab_dir/$lab/h$i/run/weft.pid")")
    done
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    before=()
    for p in "${pids[@]}"; do before+=("$(cpu_ticks "$p")"); done
    t0=$(date +%s.%N)
    sleep "$DURATION"
    after=()
    for p in "${pids[@]}"; do after+=("$(cpu_ticks "$p")"); done
    t1=$(date +%s.%N)
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    deltas=""
    for k in "${!pids[@]}"; do deltas+="$((after[k] - before[k])) "; done
    echo "$deltas" | awk -v hz="$hz" -v secs="$(echo "$t1 - $t0" | bc)" -v n="$n" -v l0="$load0" -v l1="$load1" '{
        min = -1; max = 0; sum = 0
        for (i = 1; i <= NF; i++) {
            p = $i / hz / secs * 100; sum += p
            if (min < 0 || p < min) min = p
            if (p > max) max = p
        }
        printf "%-8d %12.2f %12.2f %12.2f %14.1f   %s / %s\n", n, sum / NF, min, max, sum, l0, l1
    }'
    "$WEFT" lab down --name "$lab" >/dev/null 2>&1
done
