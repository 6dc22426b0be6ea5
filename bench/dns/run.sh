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

NAMES=${NAMES:-1000}
. bench/dns/lib.sh
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
    wait_answer "bench/dns: server on port $1 did not answer within 5 s" \
        dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 bench.weft.local
}

# dnsperf's figures for port $1 (see lib.sh).
load() {
    local out
    out=$(dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$DURATION" -c "$CLIENTS" -T 1 -q 200 2>&1)
    echo "$out" >"$work/dnsperf-$1.log"
    dnsperf_figures bench/dns "$out"
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
alternate_rounds 26 "dnsmasq $(/usr/sbin/dnsmasq -v | awk 'NR==1 {print $3}')" "$dport" \
    "weft-dns ($NAMES+1 names)" "$wport"
