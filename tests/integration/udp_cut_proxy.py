#!/usr/bin/env python3
"""A UDP forwarder that can cut the flows going through it (for pong_resume.sh).

    udp_cut_proxy.py SERVER_PORT PORT_FILE CONTROL_FILE DELAY

Listens on 127.0.0.1 (port chosen by the kernel, written to PORT_FILE) and
forwards each client address to 127.0.0.1:SERVER_PORT through its own
socket.  When CONTROL_FILE appears, every flow that exists at that moment is
cut: packets from the server to the client are dropped at once, packets from
the client to the server DELAY seconds later.  Flows that start afterwards
(a reconnect comes from a new port) pass untouched.  So the client sees a
dead connection first, while the server still hears from it for a while.
"""
import os
import select
import socket
import sys
import time


def main():
    server_port, port_file, control, delay = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    lst = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lst.bind(("127.0.0.1", 0))
    with open(port_file + ".tmp", "w") as f:
        f.write(str(lst.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    flows = {}  # client address -> [upstream socket, time of the cut or None]
    owner = {}  # upstream socket -> client address
    cut = False
    dropped = 0
    while True:
        ready, _, _ = select.select([lst] + list(owner), [], [], 0.05)
        now = time.monotonic()
        if not cut and os.path.exists(control):
            cut = True
            for f in flows.values():
                f[1] = now
            print("proxy: cut %d flow(s)" % len(flows), file=sys.stderr, flush=True)
        for s in ready:
            if s is lst:
                data, addr = lst.recvfrom(65535)
                f = flows.get(addr)
                if f is None:
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    u.connect(("127.0.0.1", server_port))
                    f = flows[addr] = [u, None]
                    owner[u] = addr
                    print("proxy: new flow from port %d" % addr[1], file=sys.stderr, flush=True)
                if f[1] is not None and now - f[1] >= delay:
                    dropped += 1
                    continue
                try:
                    f[0].send(data)
                except OSError:
                    pass
            else:
                try:
                    data = s.recv(65535)
                except OSError:
                    continue
                addr = owner[s]
                if flows[addr][1] is not None:
                    dropped += 1
                    continue
                lst.sendto(data, addr)


if __name__ == "__main__":
    main()
