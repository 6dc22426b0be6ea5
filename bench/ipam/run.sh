#!/usr/bin/env bash
# IPAM through real routers: allocations per second on one peer (HTTP API, each allocation
# persisted with fsync before it is answered; group commit batches concurrent ones), and the
# time of an allocation that needs a space request from another peer (two hosts of a lab,
# one underlay hop, the donor persists before granting). Needs root: it builds a two-host
# lab (`weft lab`), which it always takes down.
#
#   sudo bench/ipam/run.sh          # or N=2000 CLIENTS=8 K=20 ROUNDS=3 ...
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-2000}
CLIENTS=${CLIENTS:-8}
K=${K:-20}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh
bench_needs_root "it builds network namespaces" python3:python3

bench_weft
weft="$WEFT"
lab="bipam$$"
cleanup() {
    rc=$?
    if [ "$rc" != 0 ]; then
        for h in h1 h2; do
            echo "--- $h router log (last IPAM lines)" >&2
            grep IPAM "/run/weft-lab/$lab/$h/run/weft.log" 2>/dev/null | tail -20 | cut -c1-200 >&2 || true
        done
    fi
    "$weft" lab down --name "$lab" >/dev/null 2>&1 || echo "bench/ipam/run.sh: run: $weft lab down --name $lab" >&2
}
trap cleanup EXIT
in_lab() { "$weft" lab exec --name "$lab" "$@"; }

"$weft" lab up --hosts 2 --name "$lab" >/dev/null
# seed= splits the range in two halves without waiting for consensus: pa owns 10.32-10.39.
in_lab h1 -- "$weft" launch --name pa --ipalloc-init seed=pa,pb h2 >/dev/null
in_lab h2 -- "$weft" launch --name pb --ipalloc-init seed=pa,pb h1 >/dev/null
peers() { in_lab h2 -- "$weft" report 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Router"]["Peers"]))' 2>/dev/null || echo 0; }
for i in $(seq 101); do
    [ "$(peers)" = 2 ] && break
    [ "$i" = 101 ] && { echo "bench/ipam/run.sh: the two routers did not connect within 10 s" >&2; exit 1; }
    sleep 0.1
done
echo "# $(date -u +%F) $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    echo "## round $r"
    # Fresh /24s in pa's half, asked for on pb: each one a space request to pa.
    in_lab h2 -- python3 bench/ipam/load.py request "$K" "10.$((32 + r))"
    in_lab h1 -- python3 bench/ipam/load.py rate "$N" "$CLIENTS"
    in_lab h1 -- python3 bench/ipam/load.py rate "$N" 1
done
