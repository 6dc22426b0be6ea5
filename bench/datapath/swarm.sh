#!/usr/bin/env bash
# The peer to beat: a Docker Swarm overlay (kernel VXLAN, docker's own) between two lab
# hosts, one dockerd each (recipe in /work/shared/TESTBED.md). Prints one line:
# "GBIT_PER_S RTT_MS" for iperf3 single-stream TCP and median ping RTT container to
# container. Called by run.sh; needs dockerd (docker.io), iperf3, and $WEFT (a weft binary).
#   usage: WEFT=path/to/weft swarm.sh SECS
set -euo pipefail
SECS=${1:-10}
W=${WEFT:?set WEFT to a weft binary}
LAB=bsw$$
BASE=/tmp/weft-bench-$LAB
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    "$W" lab down --name "$LAB" >/dev/null 2>&1 || true
    rm -rf "$BASE"
}
trap cleanup EXIT

dk() { # host args...
    local h=$1
    shift
    "$DOCKER" -H "unix://$BASE/$h/docker.sock" "$@"
}

"$W" lab up --hosts 2 --name "$LAB" >/dev/null
for i in 1 2; do
    h=h$i
    D=$BASE/$h
    mkdir -p "$D/data" "$D/exec" "$D/plugins"
    ip netns exec "$LAB-$h" sh -c "ip link add dbr0 type bridge && ip addr add 172.31.$i.1/24 dev dbr0 && ip link set dbr0 up"
    ip netns exec "$LAB-$h" sh -c "
      mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup &&
      for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
        mkdir -p /sys/fs/cgroup/\$c && mount -t cgroup -o \$c cgroup /sys/fs/cgroup/\$c || exit 1; done &&
      mkdir -p /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd &&
      mkdir -p /run/docker/plugins && mount --bind $D/plugins /run/docker/plugins &&
      exec dockerd --data-root $D/data --exec-root $D/exec -H unix://$D/docker.sock --pidfile $D/docker.pid -b dbr0" \
        >"$D/dockerd.log" 2>&1 &
    PIDS+=($!)
done
for h in h1 h2; do
    for _ in $(seq 300); do dk "$h" info >/dev/null 2>&1 && break; sleep 0.1; done
    dk "$h" info >/dev/null || { tail -5 "$BASE/$h/dockerd.log" >&2; exit 1; }
done

# An image with busybox, iperf3 and its libraries (no registry here).
R=$BASE/rootfs
mkdir -p "$R/bin" "$R/tmp"
chmod 1777 "$R/tmp"
cp /bin/busybox "$R/bin/" 2>/dev/null || cp "$(command -v busybox)" "$R/bin/"
for c in sh ping ip sleep cat; do ln -sf busybox "$R/bin/$c"; done
cp "$(command -v iperf3)" "$R/bin/"
for lib in $(ldd "$(command -v iperf3)" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done
for h in h1 h2; do tar -C "$R" -c . | dk "$h" import - local/bench:latest >/dev/null; done

dk h1 swarm init --advertise-addr 172.29.0.1 >/dev/null
TOKEN=$(dk h1 swarm join-token -q worker)
dk h2 swarm join --token "$TOKEN" 172.29.0.1:2377 >/dev/null
dk h1 network create -d overlay --attachable benchnet >/dev/null
dk h1 run -d --name srv --network benchnet local/bench:latest iperf3 -s >/dev/null
SRV=$(dk h1 inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' srv)
RTT=$(dk h2 run --rm --network benchnet local/bench:latest ping -c 20 -i 0.05 "$SRV" |
    sed -n 's/.*time=\([0-9.]*\).*/\1/p' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
GBPS=$(dk h2 run --rm --network benchnet local/bench:latest iperf3 -J -c "$SRV" -t "$SECS" |
    sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1 | awk '{printf "%.2f\n", $1/1e9}')
dk h1 rm -f srv >/dev/null 2>&1 || true
dk h2 swarm leave --force >/dev/null 2>&1 || true
dk h1 swarm leave --force >/dev/null 2>&1 || true
echo "$GBPS $RTT"
