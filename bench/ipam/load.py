#!/usr/bin/env python3
"""IPAM load through a router's HTTP API (its unix socket, $WEFT_RUN_DIR/weft.sock: the
TCP port 6784 only reads).

  load.py rate N CLIENTS      N allocations (default subnet) spread over CLIENTS keep-alive
                              connections, then N releases; prints allocations/s.
  load.py request K PREFIX    K allocations, each in a fresh /24 PREFIX.k.0/24 that only
                              another peer owns (so each needs a space request); prints the
                              latency of each and their median.
"""
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time


class UnixConnection(http.client.HTTPConnection):
    """HTTP to the router's API socket, where changes are served."""

    def __init__(self, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = os.path.join(os.environ.get("WEFT_RUN_DIR", "/run/weft"), "weft.sock")

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def call(conn, method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path} {body}: HTTP {r.status}: {data.decode(errors='replace')}")
    return json.loads(data) if data else None


def rate(n, clients):
    per = n // clients
    errors = []

    def worker(c, op):
        conn = UnixConnection()
        try:
            for i in range(per):
                owner = f"bench-{c}-{i}"
                if op == "allocate":
                    call(conn, "POST", "/ipam/allocate", {"owner": owner})
                else:
                    call(conn, "POST", "/ipam/release", {"owner": owner})
        except BaseException as e:  # report, do not hang the other threads
            errors.append(str(e))

    out = {}
    for op in ("allocate", "release"):
        threads = [threading.Thread(target=worker, args=(c, op)) for c in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        if errors:
            raise SystemExit(errors[0])
        out[op] = per * clients / dt
    print(f"allocations/s {out['allocate']:.0f}  releases/s {out['release']:.0f}  "
          f"({per * clients} each, {clients} clients)")


def request(k, prefix):
    conn = UnixConnection()
    lat = []
    for i in range(k):
        t0 = time.perf_counter()
        call(conn, "POST", "/ipam/allocate", {"owner": f"far-{i}", "addr": f"net:{prefix}.{i}.0/24"})
        lat.append((time.perf_counter() - t0) * 1000)
    print("space-request allocations ms: " + " ".join(f"{x:.1f}" for x in lat))
    print(f"median {statistics.median(lat):.1f} ms  min {min(lat):.1f}  max {max(lat):.1f}  ({k} allocations)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "rate":
        rate(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "request":
        request(int(sys.argv[2]), sys.argv[3])
    else:
        raise SystemExit(__doc__)
