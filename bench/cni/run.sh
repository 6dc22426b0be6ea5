#!/usr/bin/env bash
# CNI ADD latency (not a test): N parallel ADDs (default 50) through weft's plugin and,
# in the same run on the same lab host, through the reference bridge + host-local
# plugins (containernetworking-plugins); p50 and p99 of each ADD's wall time, and the
# ratio. Each ADD gets its own fresh network namespace, as a runtime's would. weft's
# addresses come from the cluster-wide IPAM (fsynced before the answer); host-local's
# are unique on this host only. Needs root, iproute2, python3, containernetworking-plugins.
#   N            parallel ADDs per plugin (default 50)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-50}
LAB=bcni$$
REF=${REF_PLUGINS:-/usr/lib/cni}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p weft
W=$CARGO_TARGET_DIR/release/weft
TMP=$(mktemp -d /tmp/weft-bench-cni.XXXXXX)

cleanup() {
    for i in $(seq "$N"); do
        ip netns del "$LAB-w$i" 2>/dev/null || true
        ip netns del "$LAB-r$i" 2>/dev/null || true
    done
    "$W" lab down --name "$LAB" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

[ -x "$REF/bridge" ] && [ -x "$REF/host-local" ] || {
    echo "bench/cni: $REF/bridge and host-local are missing; apt-get install containernetworking-plugins" >&2
    exit 1
}
"$W" lab up --hosts 1 --name "$LAB" >/dev/null
"$W" lab exec --name "$LAB" h1 -- "$W" launch --nickname h1 >/dev/null
"$W" lab exec --name "$LAB" h1 -- "$W" prime >/dev/null
SOCK=$("$W" lab exec --name "$LAB" h1 -- sh -c 'echo "$WEFT_RUN_DIR/weft.sock"')
cat >"$TMP/weft.json" <<JSON
{"cniVersion":"1.0.0","name":"bench","type":"weft","socket":"$SOCK"}
JSON
cat >"$TMP/ref.json" <<JSON
{"cniVersion":"1.0.0","name":"benchref","type":"bridge","bridge":"cnibr0","isGateway":true,
 "ipam":{"type":"host-local","subnet":"10.99.0.0/16","dataDir":"$TMP/host-local"}}
JSON
for i in $(seq "$N"); do
    ip netns add "$LAB-w$i"
    ip netns add "$LAB-r$i"
done

# N ADDs at once, each timed from its start to its exit; then the DELs (untimed).
python3 - "$N" "$LAB" "$W" "$REF" "$TMP" <<'PY'
import os, subprocess, sys, time, json
n, lab, weft, ref, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
hostns = f"/run/netns/{lab}-h1"

def run(bin_, conf, tag, cmd):
    procs = []
    for i in range(1, n + 1):
        env = dict(os.environ, CNI_COMMAND=cmd, CNI_CONTAINERID=f"{tag}{i}",
                   CNI_NETNS=f"/run/netns/{lab}-{tag}{i}", CNI_IFNAME="eth0", CNI_PATH=ref)
        f = open(conf, "rb")
        t0 = time.monotonic()
        p = subprocess.Popen(["nsenter", f"--net={hostns}", bin_], stdin=f, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        procs.append((p, t0, f))
    lat, bad = [], []
    for p, t0, f in procs:
        out, err = p.communicate()
        lat.append((time.monotonic() - t0) * 1000)
        f.close()
        if p.returncode != 0:
            bad.append(out.decode() + err.decode())
    if bad:
        print(f"{tag} {cmd}: {len(bad)} failed, first: {bad[0].strip()}", file=sys.stderr)
        sys.exit(1)
    return sorted(lat)

def pct(v, q):
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]

rows = []
for name, bin_, conf, tag in [("weft", weft, f"{tmp}/weft.json", "w"),
                              ("bridge+host-local", f"{ref}/bridge", f"{tmp}/ref.json", "r")]:
    lat = run(bin_, conf, tag, "ADD")
    run(bin_, conf, tag, "DEL")
    rows.append((name, pct(lat, 0.5), pct(lat, 0.99), lat[-1]))
print(f"{n} parallel ADDs, one lab host; wall time per ADD (ms)")
print(f"{'plugin':<20} {'p50':>8} {'p99':>8} {'max':>8}")
for r in rows:
    print(f"{r[0]:<20} {r[1]:8.1f} {r[2]:8.1f} {r[3]:8.1f}")
print(f"weft / reference: p50 {rows[0][1] / rows[1][1]:.2f}x, p99 {rows[0][2] / rows[1][2]:.2f}x")
PY
