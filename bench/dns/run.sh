#!/usr/bin/env bash
# Queries per second for a cached container name: weft's DNS server against dnsmasq,
# both on 127.0.0.1 of this machine, loaded by the same tool (dnsperf) the same way.
# Bounded: each run lasts DURATION seconds (default 10). Loopback only.
#
# The two servers are loaded in turn, ROUNDS times (default 3), so that load from other
# work on the machine hits both alike; the table shows each round and the mean.
#
#   bench/dns/run.sh            # or DURATION=5 ROUNDS=2 CLIENTS=4 bench/dns/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}
NAMES=${NAMES:-1000}
for c in dnsperf dnsmasq dig; do
    PATH="$PATH:/usr/sbin" command -v "$c" >/dev/null ||
        { echo "bench/dns: $c is missing: apt-get install -y dnsperf dnsmasq dnsutils" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build -q --release -p weft-dns --example dns_bench_server
server_bin="$CARGO_TARGET_DIR/release/examples/dns_bench_server"

work=$(mktemp -d /tmp/weft-dns-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (bounded) until the server on port $1 answers bench.weft.local with 10.32.0.1.
wait_ready() {
    for _ in $(seq 50); do
        if [ "$(dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 bench.weft.local 2>/dev/null)" = 10.32.0.1 ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench/dns: server on port $1 did not answer within 5 s" >&2
    exit 1
}

# dnsperf's "Queries per second" and "Average Latency" for port $1.
load() {
    local out
    out=$(dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$DURATION" -c "$CLIENTS" -T 1 -q 200 2>&1)
    echo "$out" >"$work/dnsperf-$1.log"
    local qps lat lost
    qps=$(echo "$out" | awk '/Queries per second:/ {print $4}')
    lat=$(echo "$out" | awk '/Average Latency/ {print $4}')
    lost=$(echo "$out" | awk '/Queries lost:/ {print $3}')
    [ -n "$qps" ] || { echo "bench/dns: dnsperf gave no figure:" >&2; echo "$out" >&2; exit 1; }
    echo "$qps $lat $lost"
}

printf 'bench.weft.local A\n' >"$work/queries"

# dnsmasq: the same name as a local host record (answered from memory, like a cached name).
dport=$(free_port)
/usr/sbin/dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --no-poll --bind-interfaces \
    --listen-address=127.0.0.1 --port="$dport" --pid-file="$work/dnsmasq.pid" --user=root \
    --cache-size=10000 --host-record=bench.weft.local,10.32.0.1 --local-ttl=1 2>"$work/dnsmasq.log" &
pids+=($!)
wait_ready "$dport"

# weft: bench.weft.local among $NAMES other container names.
"$server_bin" --names "$NAMES" >"$work/weft.out" 2>"$work/weft.log" &
pids+=($!)
for _ in $(seq 50); do grep -q '^ready' "$work/weft.out" 2>/dev/null && break; sleep 0.1; done
wport=$(awk '/^ready/ {print $2}' "$work/weft.out")
[ -n "$wport" ] || { echo "bench/dns: weft bench server did not start:" >&2; cat "$work/weft.log" >&2; exit 1; }
wait_ready "$wport"

echo
echo "DNS: A query for a cached container name, UDP on 127.0.0.1, dnsperf -c $CLIENTS -T 1, ${DURATION}s per run ($(nproc) cores)"
printf '%-6s %-26s %14s %14s %6s\n' round server "queries/s" "avg latency s" lost
d_sum=0
w_sum=0
dname="dnsmasq $(/usr/sbin/dnsmasq -v | awk 'NR==1 {print $3}')"
wname="weft-dns ($NAMES+1 names)"
for r in $(seq "$ROUNDS"); do
    read -r d_qps d_lat d_lost < <(load "$dport")
    printf '%-6s %-26s %14.0f %14s %6s\n' "$r" "$dname" "$d_qps" "$d_lat" "$d_lost"
    read -r w_qps w_lat w_lost < <(load "$wport")
    printf '%-6s %-26s %14.0f %14s %6s\n' "$r" "$wname" "$w_qps" "$w_lat" "$w_lost"
    d_sum=$(awk -v a="$d_sum" -v b="$d_qps" 'BEGIN { print a + b }')
    w_sum=$(awk -v a="$w_sum" -v b="$w_qps" 'BEGIN { print a + b }')
done
awk -v d="$d_sum" -v w="$w_sum" -v n="$ROUNDS" -v dn="$dname" -v wn="$wname" 'BEGIN {
    printf "mean   %-26s %14.0f\nmean   %-26s %14.0f   ratio weft/dnsmasq %.2f\n", dn, d / n, wn, w / n, w / d }'
