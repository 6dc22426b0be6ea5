#!/usr/bin/env bash
# Queries per second for a cached container name answered by a running weft router (its
# listener on 127.0.0.11:53 inside the container's network namespace, as containers use it)
# against dnsmasq started in the same namespace (127.0.0.13:53), loaded by the same dnsperf
# command from inside that namespace. Needs root: it builds a one-host lab (`weft lab`),
# which it always takes down. Bounded: DURATION seconds per run (default 10), ROUNDS
# alternating rounds (default 3).
#
#   sudo bench/dns/router.sh      # or DURATION=5 ROUNDS=2 CLIENTS=4 NAMES=100 ...
set -euo pipefail
cd "$(dirname "$0")/../.."

NAMES=${NAMES:-100}
. bench/dns/lib.sh
. bench/lib.sh
bench_needs_root "it builds network namespaces"
for c in dnsperf dnsmasq dig ip; do
    PATH="$PATH:/usr/sbin" command -v "$c" >/dev/null ||
        { echo "bench/dns/router.sh: $c is missing: apt-get install -y dnsperf dnsmasq dnsutils iproute2" >&2; exit 1; }
done

bench_weft
weft="$WEFT"
lab="bdns$$"
work=$(mktemp -d /tmp/weft-dns-router-bench.XXXXXX)
dnsmasq_pid=""
cleanup() {
    if [ -n "$dnsmasq_pid" ]; then kill "$dnsmasq_pid" 2>/dev/null || true; wait "$dnsmasq_pid" 2>/dev/null || true; fi
    "$weft" lab down --name "$lab" >/dev/null 2>&1 || echo "bench/dns/router.sh: run: $weft lab down --name $lab" >&2
    rm -rf "$work"
}
trap cleanup EXIT

in_lab() { "$weft" lab exec --name "$lab" "$@"; }

"$weft" lab up --hosts 1 --name "$lab" >/dev/null 2>"$work/lab.log" || { cat "$work/lab.log" >&2; exit 1; }
in_lab h1 -- "$weft" launch >/dev/null
"$weft" lab container --name "$lab" h1 c1 ip:10.32.0.1/12 >/dev/null
# Other names in the store, as on a busy network.
for i in $(seq "$NAMES"); do
    in_lab h1 -- "$weft" dns-add "10.32.1.$((i % 250 + 1))" -h "other$i.weft.local" >/dev/null
done

# dnsmasq in the container's namespace: the same name as a host record (from memory).
"$weft" lab exec --name "$lab" c1 -- /usr/sbin/dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --bind-interfaces --listen-address=127.0.0.13 --port=53 --pid-file= --user=root \
    --cache-size=10000 --host-record=c1.weft.local,10.32.0.1 --local-ttl=1 2>"$work/dnsmasq.log" &
dnsmasq_pid=$!

wait_ready() {
    wait_answer "bench/dns/router.sh: nothing answered on $1 within 5 s" \
        in_lab c1 -- dig @"$1" +short +time=1 +tries=1 c1.weft.local
}
wait_ready 127.0.0.13
wait_ready 127.0.0.11

printf 'c1.weft.local A\n' >"$work/queries"
load() {
    local out
    out=$(in_lab c1 -- dnsperf -s "$1" -d "$work/queries" -l "$DURATION" -c "$CLIENTS" -T 1 -q 200 2>&1)
    dnsperf_figures bench/dns/router.sh "$out"
}

echo
echo "DNS in a container's netns: A query for a cached container name, UDP, dnsperf -c $CLIENTS -T 1, ${DURATION}s per run ($(nproc) cores)"
alternate_rounds 30 "dnsmasq $(/usr/sbin/dnsmasq -v | awk 'NR==1 {print $3}') 127.0.0.13" 127.0.0.13 \
    "weft router 127.0.0.11" 127.0.0.11
