#!/usr/bin/env python3
"""New TCP connections per second (bench/services, not a test).

`conn_rate.py serve PORT` accepts and closes connections until killed (one process per
core, SO_REUSEPORT). `conn_rate.py connect ADDR PORT SECS` opens connections to ADDR:PORT
for SECS seconds from one process per core, each connect() completed and then closed
with a reset (SO_LINGER 0, so no TIME_WAIT exhausts the client's ports), and prints the
connections per second of all of them together.
"""
import ctypes
import os
import signal
import socket
import struct
import sys
import time

PROCS = max(1, os.cpu_count() or 1)


def serve(port):
    for _ in range(PROCS - 1):
        if os.fork() == 0:
            # A helper dies with the first process, which the caller kills by its pid.
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    while True:
        c, _ = s.accept()
        c.close()


def connect_loop(addr, port, secs, out):
    linger = struct.pack("ii", 1, 0)
    n, fails = 0, 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        c.settimeout(2)
        try:
            c.connect((addr, port))
            n += 1
        except OSError:
            fails += 1
        c.close()
    os.write(out, f"{n} {fails}\n".encode())


def connect(addr, port, secs):
    r, w = os.pipe()
    kids = []
    for _ in range(PROCS):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            connect_loop(addr, port, secs, w)
            os._exit(0)
        kids.append(pid)
    os.close(w)
    for pid in kids:
        os.waitpid(pid, 0)
    total, fails = 0, 0
    with os.fdopen(r) as f:
        for line in f:
            a, b = line.split()
            total += int(a)
            fails += int(b)
    if fails:
        print(f"{fails} connections failed", file=sys.stderr)
    print(f"{total / secs:.0f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["connect"]:
        connect(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit("usage: conn_rate.py serve PORT | connect ADDR PORT SECS")
