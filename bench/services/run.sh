#!/usr/bin/env bash
# Services data-path benchmark (not a test): in one run, on a 2-host lab (release build),
# a client container on h2 and one task of a service on h1 (fastdp between the hosts);
# each figure measured to the task's own address ("direct") and to the service's VIP
# (nftables DNAT in the client's namespace), interleaved (direct, VIP, VIP, direct, ...),
# with the ratio VIP / direct of the medians:
#   - single-stream TCP throughput (iperf3, BENCH_SECS each);
#   - new TCP connections per second (conn_rate.py: connect, then close with a reset;
#     one client process per core, BENCH_CONN_SECS each).
# Both paths keep conntrack on in the client's namespace (weft_svc is there either way),
# so the difference is the VIP's dispatch and DNAT. Needs root, iproute2, nft, iperf3,
# python3. The nftables-scale figures are in bench/services/nft/.
#   BENCH_SECS        iperf3 duration per measurement (default 10)
#   BENCH_CONN_SECS   duration of each connection-rate measurement (default 5)
#   BENCH_ROUNDS      measurements of each kind per path (default 4); medians are compared
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${BENCH_SECS:-10}
CONN_SECS=${BENCH_CONN_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-4}
LAB=bsvc$$
LOG=/tmp/weft-bench-services.$$.log
HERE=$PWD/bench/services
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p weft
W=$CARGO_TARGET_DIR/release/weft
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    "$W" lab down --name "$LAB" >/dev/null 2>&1 || true
    rm -f "$LOG"
}
trap cleanup EXIT

ex() { "$W" lab exec --name "$LAB" "$@"; }
gbps() { # iperf3 -J output on stdin -> Gbit/s received
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))'
}
iperf() { # server-address -> Gbit/s (server: one connection, in t1)
    ex t1 -- iperf3 -s -1 -D >/dev/null
    for _ in $(seq 50); do ex t1 -- sh -c 'ss -ltn | grep -q ":5201 "' && break; sleep 0.1; done
    ex c2 -- iperf3 -J -c "$1" -t "$SECS" | gbps
}
rate() { # server-address -> connections/s
    ex c2 -- python3 "$HERE/conn_rate.py" connect "$1" 9000 "$CONN_SECS"
}
median() { sort -n | awk '{a[NR] = $1} END {printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }

"$W" lab up --hosts 2 --name "$LAB" >/dev/null 2>"$LOG" || { cat "$LOG" >&2; exit 1; }
ex h1 -- "$W" launch --nickname h1 h2 >/dev/null
ex h2 -- "$W" launch --nickname h2 h1 >/dev/null
for _ in $(seq 100); do
    [ "$(ex h1 -- "$W" status connections | grep -c fastdp || true)" -ge 1 ] && break
    sleep 0.2
done
ex h1 -- "$W" service create bench --port 5201 --port 9000 >/dev/null
TASK=$("$W" lab container --name "$LAB" h1 t1 --service bench | head -1 | cut -d/ -f1)
"$W" lab container --name "$LAB" h2 c2 >/dev/null
VIP=""
for _ in $(seq 100); do
    VIP=$(ex h2 -- "$W" service inspect bench 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["vip"] if any(t["healthy"] for t in d["tasks"]) else "")' 2>/dev/null || true)
    [ -n "$VIP" ] && break
    sleep 0.2
done
[ -n "$VIP" ] || { echo "bench/services: h2 never saw service bench with a healthy task" >&2; exit 1; }

ex t1 -- python3 "$HERE/conn_rate.py" serve 9000 &
PIDS+=($!)
for _ in $(seq 100); do
    ex c2 -- python3 "$HERE/conn_rate.py" connect "$VIP" 9000 0.2 >/dev/null 2>&1 && break
    sleep 0.1
done

# Rounds alternate the order (direct first, then the VIP first) so that a drift of the
# machine's load weighs on both alike.
# alternate MEASURE DIRECT VIA: ROUNDS figures of MEASURE to the task into array DIRECT
# and to the VIP into array VIA.
alternate() {
    local measure=$1 r
    local -n direct=$2 via=$3
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then
            direct+=("$("$measure" "$TASK")") via+=("$("$measure" "$VIP")")
        else
            via+=("$("$measure" "$VIP")") direct+=("$("$measure" "$TASK")")
        fi
    done
}
D_BW=() V_BW=() D_CR=() V_CR=()
alternate iperf D_BW V_BW
alternate rate D_CR V_CR
DB=$(printf '%s\n' "${D_BW[@]}" | median)
VB=$(printf '%s\n' "${V_BW[@]}" | median)
DC=$(printf '%s\n' "${D_CR[@]}" | median)
VC=$(printf '%s\n' "${V_CR[@]}" | median)

echo "client c2 on h2 -> task t1 ($TASK) on h1, VIP $VIP; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %10s %10s %8s   %s\n' "measure (median of $ROUNDS)" "direct" "via VIP" "VIP/dir" "each run: direct | VIP"
printf '%-34s %10s %10s %8s   %s\n' "single TCP stream, Gbit/s (${SECS}s)" "$DB" "$VB" "$(ratio "$VB" "$DB")" "${D_BW[*]} | ${V_BW[*]}"
printf '%-34s %10s %10s %8s   %s\n' "new TCP connections/s (${CONN_SECS}s)" "$DC" "$VC" "$(ratio "$VC" "$DC")" "${D_CR[*]} | ${V_CR[*]}"
