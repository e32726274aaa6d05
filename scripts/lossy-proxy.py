#!/usr/bin/env python3
"""A UDP forwarder that delays and drops packets, for trying the relay and
its clients on a bad link without netem (this kernel has none).

    scripts/lossy-proxy.py [--port-file FILE] SERVER_PORT LISTEN_PORT DELAY_MS LOSS_PCT [SEED]

Listens on 127.0.0.1:LISTEN_PORT (0: the kernel picks one; --port-file
writes the port to FILE once bound, for tests such as it_link.c). Each
client address gets its own upstream
socket to 127.0.0.1:SERVER_PORT, so the relay sees one flow per client.
Every packet, in either direction, is dropped with probability LOSS_PCT %
or else delivered DELAY_MS later. One Python thread is enough for a few
thousand packets a second: use small runs (docs/performance.md, "The ACK
hold").
"""
import heapq
import os
import random
import select
import socket
import sys
import time


def main():
    args = sys.argv[1:]
    port_file = None
    if len(args) >= 2 and args[0] == "--port-file":
        port_file, args = args[1], args[2:]
    if len(args) < 4:
        sys.exit(__doc__)
    server_port, listen_port = int(args[0]), int(args[1])
    delay, loss = float(args[2]) / 1000.0, float(args[3]) / 100.0
    random.seed(int(args[4]) if len(args) > 4 else 1)
    lst = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lst.bind(("127.0.0.1", listen_port))
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(lst.getsockname()[1]))
        os.rename(port_file + ".tmp", port_file)
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
            if loss == 0 or random.random() >= loss:
                order += 1
                heapq.heappush(due, (now + delay, order, src, data, dst))


if __name__ == "__main__":
    main()
