#!/usr/bin/env python3
"""Holds connections across a change, for the services tests: opens COUNT TCP connections
to ADDR:PORT and asks each who answers (a line each), writes those names to HELD, waits
(at most 60 s) until the file GO exists, then asks on each connection again and prints
`FIRST SECOND` per connection (SECOND is FAIL if that connection broke).

Usage: hold.py ADDR PORT COUNT HELD GO
"""
import os
import socket
import sys
import time

addr, port, count, held, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]


def ask(conn, f):
    try:
        conn.sendall(b"who\n")
        return f.readline().decode().strip() or "FAIL"
    except OSError:
        return "FAIL"


conns = []
for _ in range(count):
    c = socket.create_connection((addr, port), timeout=3)
    f = c.makefile("rb")
    conns.append((c, f, ask(c, f)))
with open(held + ".tmp", "w") as out:
    out.write("".join(first + "\n" for _, _, first in conns))
os.rename(held + ".tmp", held)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)
for c, f, first in conns:
    print(first, ask(c, f))
