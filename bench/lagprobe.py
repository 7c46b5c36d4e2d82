#!/usr/bin/env python3
"""Replication lag probe: writes a key on the master, then polls the slave until it is there.

    lagprobe.py MASTER_PORT SLAVE_PORT SAMPLES [INTERVAL_MS]

Prints "p50_ms p99_ms max_ms" of the time from the master's acknowledgement to the value being
readable on the slave. Plain sockets and RESP, no client library; loopback only.
"""
import socket
import sys
import time


def conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def cmd(s, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk
        if buf[:1] in (b"+", b"-", b":") and buf.endswith(b"\r\n"):
            return buf
        if buf[:1] == b"$":
            head, _, rest = buf.partition(b"\r\n")
            n = int(head[1:])
            if n < 0:
                return None
            if len(rest) >= n + 2:
                return rest[:n]


def main():
    mport, sport, samples = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    interval = (int(sys.argv[4]) if len(sys.argv) > 4 else 20) / 1000.0
    m, s = conn(mport), conn(sport)
    lags = []
    for i in range(samples):
        key = "lagprobe:%d:%d" % (time.time_ns(), i)
        cmd(m, "SET", key, "x")
        t0 = time.perf_counter()
        deadline = t0 + 10
        while cmd(s, "GET", key) is None:
            if time.perf_counter() > deadline:
                raise SystemExit("slave did not get %s within 10 s" % key)
        lags.append((time.perf_counter() - t0) * 1000)
        time.sleep(interval)
    lags.sort()
    p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    print("%.3f %.3f %.3f" % (p(0.5), p(0.99), lags[-1]))


if __name__ == "__main__":
    main()
