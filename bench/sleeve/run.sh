#!/bin/sh
# Sleeve benchmark: iperf3 single-stream TCP and ping RTT container to container through
# the sleeve (plain and encrypted), next to the underlay veth and kernel VXLAN measured in
# the same run, plus the sleeve threads' CPU. Needs root, iproute2, iputils-ping, iperf3.
# SLEEVE_BENCH_SECS sets the iperf3 duration (default 10), SLEEVE_BENCH_ROUNDS the rounds (default 1).
set -e
command -v iperf3 >/dev/null || apt-get install -y iperf3
cd "$(dirname "$0")/../.."
exec cargo bench -p weft-datapath --bench sleeve
