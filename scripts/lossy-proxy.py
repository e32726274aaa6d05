#!/usr/bin/env python3
"""A UDP forwarder that delays and drops packets, for trying the relay and
its clients on a bad link without netem (this kernel has none).

    scripts/lossy-proxy.py SERVER_PORT LISTEN_PORT DELAY_MS LOSS_PCT [SEED]

Listens on 127.0.0.1:LISTEN_PORT. Each client address gets its own upstream
socket to 127.0.0.1:SERVER_PORT, so the relay sees one flow per client.
Every packet, in either direction, is dropped with probability LOSS_PCT %
or else delivered DELAY_MS later. One Python thread is enough for a few
thousand packets a second: use small runs (docs/performance.md, "The ACK
hold").
"""
import heapq
import random
import select
import socket
import sys
import time


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    server_port, listen_port = int(sys.argv[1]), int(sys.argv[2])
    delay, loss = float(sys.argv[3]) / 1000.0, float(sys.argv[4]) / 100.0
    random.seed(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
    lst = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lst.bind(("127.0.0.1", listen_port))
    upstream = {}  # client address -> its socket towards the server
    client_of = {}  # that socket -> client address
    due = []  # (time, order, socket to send from, data, destination)
    order = 0
    while True:
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, sock, data, dst = heapq.heappop(due)
            sock.sendto(data, dst)
        timeout = max(0.0, due[0][0] - now) if due else 0.05
        ready, _, _ = select.select([lst] + list(client_of), [], [], timeout)
        now = time.monotonic()
        for s in ready:
            data, addr = s.recvfrom(65536)
            if s is lst:
                up = upstream.get(addr)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.bind(("127.0.0.1", 0))
                    upstream[addr] = up
                    client_of[up] = addr
                src, dst = up, ("127.0.0.1", server_port)
            else:
                src, dst = lst, client_of[s]
            if random.random() >= loss:
                order += 1
                heapq.heappush(due, (now + delay, order, src, data, dst))


if __name__ == "__main__":
    main()
