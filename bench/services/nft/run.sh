#!/usr/bin/env bash
# The service table's programming cost (not a test): SERVICES services (default 1000)
# × TASKS tasks (default 10), each with a VIP port and a published port, in a Host-scope
# `ip weft_svc` table of a network namespace made for the run: the time to program all
# of them from scratch, and the time of one change against that table (one more service,
# one endpoint less, one service less), medians of ROUNDS runs (default 20), nft's start
# included. Release build. Needs root, iproute2, nftables.
#
#   sudo bench/services/nft/run.sh            # or SERVICES=10000 TASKS=1 ...
set -euo pipefail
cd "$(dirname "$0")/../../.."
SERVICES=${SERVICES:-1000}
TASKS=${TASKS:-10}
ROUNDS=${ROUNDS:-20}
. bench/lib.sh
bench_needs_root "it makes a network namespace" nft:nftables
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build -q --release -p weft-firewall --example svc_bench
ns="bsvcnft$$"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns add "$ns"
echo "kernel $(uname -r), $(nft --version), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
NETNS="$ns" ip netns exec "$ns" "$CARGO_TARGET_DIR/release/examples/svc_bench" "$SERVICES" "$TASKS" "$ROUNDS"
