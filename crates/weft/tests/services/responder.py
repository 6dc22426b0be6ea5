#!/usr/bin/env python3
"""A task's responder for the services tests: answers every UDP datagram on UDP_PORT, and
every line on a TCP connection to TCP_PORT (connections stay open), with the task's name.

Usage: responder.py NAME UDP_PORT TCP_PORT
"""
import socket
import sys
import threading

name = sys.argv[1].encode()
udp_port, tcp_port = int(sys.argv[2]), int(sys.argv[3])


def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", udp_port))
    while True:
        _, peer = s.recvfrom(64)
        s.sendto(name, peer)


def lines(conn):
    with conn, conn.makefile("rb") as f:
        for _ in f:
            conn.sendall(name + b"\n")


threading.Thread(target=udp, daemon=True).start()
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", tcp_port))
tcp.listen(64)
while True:
    c, _ = tcp.accept()
    threading.Thread(target=lines, args=(c,), daemon=True).start()
