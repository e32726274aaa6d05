#!/usr/bin/env python3
"""Summarises a callgrind dump of issun-server as one JSON line.

    callgrind-summary.py DUMP --deliveries N [--packets P] [--workload W] [--seconds S]
                         [--args A] [--server-env E] [--top K]

Reads the callgrind format directly (self cost per function, compressed
names resolved) instead of callgrind_annotate, so that the figures can be
grouped by shared object: the relay itself, ngtcp2, GnuTLS and nettle, libc.
Prints instructions per delivery in total and per group, and the top
functions by self cost.
"""
import argparse
import json
import os
import re
import sys


def parse(path):
    """Returns ({(object, function): self Ir}, total Ir, the profiled program)."""
    names = {"ob": {}, "fn": {}, "fl": {}}
    cur = {"ob": "?", "fn": "?"}
    self_cost = {}
    total = None
    program = ""
    skip_next = False  # the line after calls= is the callee's inclusive cost
    name_re = re.compile(r"^(c?)(ob|fn|fl|fi|fe)=(?:\((\d+)\))?\s*(.*)$")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            m = name_re.match(line)
            if m:
                called, kind, num, name = m.groups()
                table = names["fl" if kind in ("fl", "fi", "fe") else kind]
                if num is not None:
                    if name:
                        table[num] = name
                    name = table.get(num, "?")
                if not called and kind in ("ob", "fn"):
                    cur[kind] = name
                continue
            if line.startswith("cmd:"):
                program = line.split()[1] if len(line.split()) > 1 else ""
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
                continue
            if line[0].isdigit() or line[0] in "+-*":
                parts = line.split()
                if skip_next:
                    skip_next = False
                    continue
                if len(parts) >= 2:
                    key = (cur["ob"], cur["fn"])
                    self_cost[key] = self_cost.get(key, 0) + int(parts[1])
    return self_cost, total, program


def group_of(obj, program):
    base = os.path.basename(obj)
    if obj == program or base.startswith("issun-server"):
        return "relay"
    if base.startswith("libngtcp2"):
        return "ngtcp2"
    if base.startswith(("libgnutls", "libnettle", "libhogweed", "libgmp")):
        return "tls"
    if base.startswith(("libc.so", "libc-", "ld-linux")):
        return "libc"
    return "other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("--deliveries", type=int, required=True)
    ap.add_argument("--packets", type=int, default=0)
    ap.add_argument("--workload", default="")
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--args", default="")
    ap.add_argument("--server-env", default="")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    if a.deliveries <= 0:
        print("callgrind-summary: no deliveries in the window", file=sys.stderr)
        return 1
    costs, total, program = parse(a.dump)
    counted = sum(costs.values())
    if total is None:
        total = counted
    if total <= 0:
        print("callgrind-summary: the dump holds no instructions", file=sys.stderr)
        return 1
    groups = {}
    for (obj, _fn), ir in costs.items():
        g = group_of(obj, program)
        groups[g] = groups.get(g, 0) + ir
    top = sorted(costs.items(), key=lambda kv: kv[1], reverse=True)[: a.top]
    out = {
        "workload": a.workload,
        "args": a.args,
        "server_env": a.server_env,
        "seconds": a.seconds,
        "deliveries": a.deliveries,
        "instructions": total,
        "instr_per_delivery": round(total / a.deliveries, 1),
        "packets": a.packets,
        "packets_per_delivery": round(a.packets / a.deliveries, 3),
        "instr_per_packet": round(total / a.packets, 1) if a.packets > 0 else None,
        "per_delivery_by_part": {
            g: round(v / a.deliveries, 1) for g, v in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "top_functions": [
            {"function": fn, "object": os.path.basename(obj), "pct": round(100.0 * ir / total, 2)}
            for (obj, fn), ir in top
        ],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
