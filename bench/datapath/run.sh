#!/usr/bin/env bash
# Data-path benchmark (not a test): in one run, on a 2-host lab, single-stream TCP
# throughput (iperf3) and ping RTT container to container over fastdp and over the sleeve,
# next to the underlay veth measured in the same run, the routers' CPU during the sleeve
# run, and (when dockerd is installed and works) a Docker Swarm overlay between the same
# kind of hosts. Prints Gbit/s and ratios. Needs root, iproute2, iputils-ping, iperf3, nft.
#   BENCH_SECS   iperf3 duration per measurement (default 10)
#   BENCH_SWARM  0 to skip the Docker Swarm part (default: try it when dockerd exists)
#   WEFT         a weft binary to measure instead of building this tree's (to compare
#                two builds in one sitting)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${BENCH_SECS:-10}
LAB=bdp$$
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${WEFT:-}" ]; then
    W=$(realpath "$WEFT")
else
    cargo build --release -q -p weft
    W=$CARGO_TARGET_DIR/release/weft
fi

cleanup() { "$W" lab down --name "$LAB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

gbps() { # iperf3 -J output on stdin -> Gbit/s received
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null ||
        sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1 | awk '{printf "%.2f\n", $1/1e9}'
}
rtt() { # median RTT in ms of 20 pings: ns ip
    "$W" lab exec --name "$LAB" "$1" -- ping -c 20 -i 0.05 "$2" |
        sed -n 's/.*time=\([0-9.]*\).*/\1/p' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
iperf() { # client-ns server-ns server-ip -> Gbit/s
    "$W" lab exec --name "$LAB" "$2" -- iperf3 -s -1 -D >/dev/null
    sleep 0.5
    "$W" lab exec --name "$LAB" "$1" -- iperf3 -J -c "$3" -t "$SECS" | gbps
}
ticks() { # user+system ticks of a pid
    awk '{print $14 + $15}' "/proc/$1/stat"
}

"$W" lab up --hosts 2 --name "$LAB" >/dev/null
"$W" lab exec --name "$LAB" h1 -- "$W" launch --nickname h1 h2 >/dev/null
"$W" lab exec --name "$LAB" h2 -- "$W" launch --nickname h2 h1 >/dev/null
"$W" lab container --name "$LAB" h1 c1 ip:10.32.0.1/12 >/dev/null
"$W" lab container --name "$LAB" h2 c2 ip:10.32.0.2/12 >/dev/null
path() { "$W" lab exec --name "$LAB" h1 -- "$W" status connections | grep '(h2)' | awk '{print $4}'; }
waitpath() {
    for _ in $(seq 100); do [ "$(path)" = "$1" ] && return 0; sleep 0.1; done
    echo "h1-h2 did not reach $1 (now: $(path))" >&2
    exit 1
}
waitpath fastdp
"$W" lab exec --name "$LAB" c1 -- ping -c 3 -i 0.2 10.32.0.2 >/dev/null

UL_RTT=$(rtt h1 172.29.0.2)
UL=$(iperf h1 h2 172.29.0.2)
F_RTT=$(rtt c1 10.32.0.2)
F=$(iperf c1 c2 10.32.0.2)

# Sleeve: block fastdp between the two hosts; the pair moves over by itself.
for pair in "h1 172.29.0.2" "h2 172.29.0.1"; do
    set -- $pair
    "$W" lab exec --name "$LAB" "$1" -- nft "add table inet benchblk; add chain inet benchblk out { type filter hook output priority -10 ; } ; add rule inet benchblk out ip daddr $2 udp dport 6784 drop"
done
waitpath sleeve
"$W" lab exec --name "$LAB" c1 -- ping -c 3 -i 0.2 10.32.0.2 >/dev/null
S_RTT=$(rtt c1 10.32.0.2)
P1=$(cat /run/weft-lab/$LAB/h1/run/weft.pid)
P2=$(cat /run/weft-lab/$LAB/h2/run/weft.pid)
T1=$(ticks "$P1"); T2=$(ticks "$P2"); T0=$(date +%s.%N)
S=$(iperf c1 c2 10.32.0.2)
T1b=$(ticks "$P1"); T2b=$(ticks "$P2"); T0b=$(date +%s.%N)
HZ=$(getconf CLK_TCK)
CPU1=$(awk -v a="$T1" -v b="$T1b" -v s="$T0" -v e="$T0b" -v hz="$HZ" 'BEGIN {printf "%.0f", 100*(b-a)/hz/(e-s)}')
CPU2=$(awk -v a="$T2" -v b="$T2b" -v s="$T0" -v e="$T0b" -v hz="$HZ" 'BEGIN {printf "%.0f", 100*(b-a)/hz/(e-s)}')
RSS1=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$P1/status")

SW="" SW_RTT=""
if [ "${BENCH_SWARM:-1}" != 0 ] && command -v dockerd >/dev/null; then
    SW_OUT=$(WEFT="$W" bash bench/datapath/swarm.sh "$SECS" 2>/tmp/weft-bench-swarm.log || true)
    SW=$(echo "$SW_OUT" | awk '{print $1}')
    SW_RTT=$(echo "$SW_OUT" | awk '{print $2}')
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.2f", a/b; else print "-" }'; }
printf '%-34s %10s %12s %10s %12s\n' "path (2 hosts, single TCP stream)" "Gbit/s" "x underlay" "RTT ms" "x underlay"
printf '%-34s %10s %12s %10s %12s\n' "underlay veth (same run)" "$UL" "1.00" "$UL_RTT" "1.00"
printf '%-34s %10s %12s %10s %12s\n' "weft fastdp (kernel VXLAN)" "$F" "$(ratio "$F" "$UL")" "$F_RTT" "$(ratio "$F_RTT" "$UL_RTT")"
printf '%-34s %10s %12s %10s %12s\n' "weft sleeve (userspace UDP)" "$S" "$(ratio "$S" "$UL")" "$S_RTT" "$(ratio "$S_RTT" "$UL_RTT")"
if [ -n "$SW" ]; then
    printf '%-34s %10s %12s %10s %12s\n' "Docker Swarm overlay" "$SW" "$(ratio "$SW" "$UL")" "$SW_RTT" "$(ratio "$SW_RTT" "$UL_RTT")"
else
    echo "Docker Swarm overlay: not measured (dockerd missing or failed; see /tmp/weft-bench-swarm.log)"
fi
echo
echo "sleeve / fastdp throughput: $(ratio "$S" "$F")"
[ -n "$SW" ] && echo "fastdp / Swarm throughput: $(ratio "$F" "$SW")"
echo "router CPU during the sleeve run: h1 ${CPU1}% h2 ${CPU2}% of one core; h1 router RSS ${RSS1} MB"
