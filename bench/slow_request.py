#!/usr/bin/env python3
"""Sends one large MSET (N key/value pairs, one RESP frame) in CHUNK-byte writes with PAUSE_MS
between them, as a client on a slow link would, and prints the server's CPU time for it (from
/proc/PID/stat) and the wall time until the reply.

    bench/slow_request.py PORT PID N CHUNK PAUSE_MS

Used by bench/server-slow-request.sh; standard library only.
"""
import os
import socket
import sys
import time

port, pid, n, chunk = (int(a) for a in sys.argv[1:5])
pause = float(sys.argv[5]) / 1000
args = [b"MSET"]
for i in range(n):
    args += [b"slow:%08d" % i, b"v"]
frame = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def cpu_seconds():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
cpu0, wall0 = cpu_seconds(), time.monotonic()
for i in range(0, len(frame), chunk):
    sock.sendall(frame[i : i + chunk])
    if pause:
        time.sleep(pause)
reply = sock.recv(64)
wall = time.monotonic() - wall0
time.sleep(0.05)  # let the tick that ends the command land in /proc
assert reply == b"+OK\r\n", reply
print(f"frame_bytes={len(frame)} writes={-(-len(frame) // chunk)} "
      f"server_cpu_s={cpu_seconds() - cpu0:.2f} wall_s={wall:.2f}")
