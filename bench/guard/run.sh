#!/usr/bin/env bash
# Per-frame cost of the bridge guard (anti-spoofing, crates/firewall/src/guard.rs): two
# containers attached by weft on one lab host, container to container through the weft
# bridge, measured with the guard as weft programs it and with its chain deleted (no
# bridge prerouting hook at all), alternately: with, without, with, without ... (ROUNDS
# rounds, default 3; the summary takes the median of each).
#   - small frames: iperf3 UDP, 64-byte payloads, unlimited rate: received packets/s, and
#     the sender's CPU time per datagram (the bridge, the guard included, runs in its
#     softirq; CPU time per frame varies less than rates on a shared, loaded machine);
#   - bulk: iperf3 TCP, one stream: Gbit/s (64 KiB GSO super-frames, few frames per byte).
# Needs root, iproute2, nftables, iperf3. SECS sets each run's length (default 10).
#
#   sudo bench/guard/run.sh          # or WEFT=target/debug/weft SECS=5 bench/guard/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh
bench_needs_root "it builds network namespaces" iperf3:iperf3

bench_weft
lab="bguard$$"
server=""
cleanup() {
    # Never stops half-way (errexit is on): the lab must come down.
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    "$WEFT" lab down --name "$lab" >/dev/null 2>&1 || echo "bench/guard/run.sh: run: $WEFT lab down --name $lab" >&2
}
trap cleanup EXIT

"$WEFT" lab up --hosts 1 --name "$lab" >/dev/null 2>&1 || { echo "bench/guard/run.sh: weft lab up failed" >&2; exit 1; }
"$WEFT" lab exec --name "$lab" h1 -- "$WEFT" launch >/dev/null
"$WEFT" lab container --name "$lab" h1 c1 ip:10.32.0.1/12 >/dev/null
"$WEFT" lab container --name "$lab" h1 c2 ip:10.32.0.2/12 >/dev/null
h1="$lab-h1"
c1="$lab-c-c1"
c2="$lab-c-c2"
ip netns exec "$c1" ping -c 3 -i 0.2 -W 2 10.32.0.2 >/dev/null ||
    { echo "bench/guard/run.sh: c1 does not reach c2" >&2; exit 1; }
ip netns exec "$h1" nft list chain bridge weft guard >/dev/null ||
    { echo "bench/guard/run.sh: no guard chain on h1: is this weft with anti-spoofing?" >&2; exit 1; }

ip netns exec "$c2" iperf3 -s -B 10.32.0.2 >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do
    ip netns exec "$c2" sh -c 'ss -ltn | grep -q ":5201 "' && break
    sleep 0.1
done

udp_pps() { # "received pkt/s sender-ns-per-datagram"
    ip netns exec "$c1" iperf3 -c 10.32.0.2 -u -l 64 -b 0 -t "$SECS" -J |
        python3 -c 'import json,sys
j=json.load(sys.stdin)["end"]; e=j["sum"]; cpu=j["cpu_utilization_percent"]["host_total"]
print("%.0f %.0f" % ((e["packets"]-e["lost_packets"])/e["seconds"], cpu/100*e["seconds"]/e["packets"]*1e9))'
}
tcp_gbps() {
    ip netns exec "$c1" iperf3 -c 10.32.0.2 -t "$SECS" -J |
        python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum_received"]; print("%.2f" % (e["bits_per_second"]/1e9))'
}
guard_off() {
    ip netns exec "$h1" nft flush chain bridge weft guard
    ip netns exec "$h1" nft delete chain bridge weft guard
}
guard_on() {
    # The router programs the chain again when it (re)starts; sets and elements stayed.
    "$WEFT" lab exec --name "$lab" h1 -- "$WEFT" stop >/dev/null
    "$WEFT" lab exec --name "$lab" h1 -- "$WEFT" launch >/dev/null
    ip netns exec "$h1" nft list chain bridge weft guard | grep -q "anti-spoofing" ||
        { echo "bench/guard/run.sh: the guard did not come back" >&2; exit 1; }
}

printf '%-14s %16s %18s %14s\n' guard "UDP 64 B pkt/s" "sender ns/datagram" "TCP Gbit/s"
declare -A pps ns gbps
for round in $(seq "$ROUNDS"); do
    for mode in on off; do
        if [ "$mode" = on ] && [ "$round" -gt 1 ]; then guard_on; fi
        if [ "$mode" = off ]; then guard_off; fi
        read -r p n < <(udp_pps)
        g=$(tcp_gbps)
        pps[$mode]="${pps[$mode]:-} $p"
        ns[$mode]="${ns[$mode]:-} $n"
        gbps[$mode]="${gbps[$mode]:-} $g"
        printf '%-14s %16s %18s %14s\n' "$mode (run $round)" "$p" "$n" "$g"
    done
done
python3 - "${pps[on]}" "${pps[off]}" "${gbps[on]}" "${gbps[off]}" "${ns[on]}" "${ns[off]}" <<'EOF'
import sys
pon, poff, gon, goff, non, noff = ([float(x) for x in a.split()] for a in sys.argv[1:])
m = lambda v: sorted(v)[len(v) // 2]
print(f"median with/without: UDP {m(pon):.0f}/{m(poff):.0f} pkt/s = {m(pon)/m(poff):.3f}, "
      f"TCP {m(gon):.2f}/{m(goff):.2f} Gbit/s = {m(gon)/m(goff):.3f}")
print(f"sender CPU per datagram with/without: {m(non):.0f}/{m(noff):.0f} ns = {m(non)/m(noff):.3f}; "
      f"per-frame cost of the guard: {m(non) - m(noff):.0f} ns")
EOF
